import { dailyMarkdown, postToWebhook } from '../reports/daily-report.js';
import { createReports } from '../reports/reports.js';
import { sloBudgetLeft } from '../reports/slo-budget.js';
import { fail, openToolDatabase, startCli } from './cli.js';

/*
 * npm run report -- ab [--days 30]        the A/B report (the same JSON as GET /v1/ab-report)
 * npm run report -- daily [--json]        the last 24 h as Markdown (or JSON), posted to REPORT_WEBHOOK_URL when set
 * npm run report -- purge [--days 90]     delete predictions and feedback older than the retention
 * Uses the service's database settings (DATABASE_URL, or PGlite in DATA_DIR) and its business settings
 * (LATE_THRESHOLD_MINUTES, COST_PER_DELAY_MINUTE).
 */
const usage = 'npm run report -- ab [--days 30] | daily [--json] | purge [--days 90]';
const { command, values, config } = startCli(usage, ['ab', 'daily', 'purge'], {
  days: { type: 'string' },
  json: { type: 'boolean' },
});
if (command === 'daily' && values.days !== undefined)
  fail(`daily covers the last 24 h: no --days\nusage: ${usage}`);
if (command !== 'daily' && values.json !== undefined)
  fail(`${command} prints JSON: no --json\nusage: ${usage}`);
const days = Number(values.days ?? (command === 'ab' ? 30 : config.database.retentionDays));
if (!Number.isInteger(days) || days < 1)
  fail(`--days must be a positive whole number of days (got ${values.days})`);
const database = await openToolDatabase(config);
const reports = createReports(database.db, { business: config.business });
try {
  if (command === 'daily') {
    const report = {
      ...(await reports.dailyReport()),
      slo_budget: config.prometheusUrl ? await sloBudgetLeft(config.prometheusUrl) : null,
    };
    const markdown = dailyMarkdown(report);
    console.log(values.json ? JSON.stringify(report, null, 2) : markdown);
    if (config.reportWebhookUrl) {
      try {
        await postToWebhook(config.reportWebhookUrl, markdown);
        console.error('daily report posted to REPORT_WEBHOOK_URL');
      } catch (err) {
        // The URL carries the chat's token: the message names the setting, never the address.
        const code = (err as { cause?: { code?: string } }).cause?.code;
        console.error(
          `the daily report was not posted to REPORT_WEBHOOK_URL: ${(err as Error).message}${code ? ` (${code})` : ''}`,
        );
        process.exitCode = 1;
      }
    }
  } else {
    const result =
      command === 'ab'
        ? await reports.abReport({ days })
        : { purged: await reports.purge(days), older_than_days: days };
    console.log(JSON.stringify(result, null, 2));
  }
} finally {
  await reports.close();
  await database.close();
}
