import { createReports } from '../reports/reports.js';
import { fail, openToolDatabase, startCli } from './cli.js';

/*
 * npm run report -- ab [--days 30]        the A/B report (the same JSON as GET /v1/ab-report)
 * npm run report -- purge [--days 90]     delete predictions and feedback older than the retention
 * Uses the service's database settings (DATABASE_URL, or PGlite in DATA_DIR).
 */
const { command, values, config } = startCli(
  'npm run report -- ab [--days 30] | purge [--days 90]',
  ['ab', 'purge'],
  { days: { type: 'string' } },
);
const days = Number(values.days ?? (command === 'ab' ? 30 : config.database.retentionDays));
if (!Number.isInteger(days) || days < 1)
  fail(`--days must be a positive whole number of days (got ${values.days})`);
const database = await openToolDatabase(config);
const reports = createReports(database.db);
try {
  const result =
    command === 'ab'
      ? await reports.abReport({ days })
      : { purged: await reports.purge(days), older_than_days: days };
  console.log(JSON.stringify(result, null, 2));
} finally {
  await reports.close();
  await database.close();
}
