import { bookingRefs } from '../privacy/booking-ref.js';
import { dailyMarkdown, postToWebhook } from '../reports/daily-report.js';
import { eraseBooking } from '../reports/erasure.js';
import { createReports } from '../reports/reports.js';
import { sloBudgetLeft } from '../reports/slo-budget.js';
import { redactedMessage } from '../telemetry/redacted-error.js';
import { cliActor, fail, openToolDatabase, startCli } from './cli.js';

/*
 * npm run report -- ab [--days 30]        the A/B report (the same JSON as GET /v1/ab-report)
 * npm run report -- daily [--json]        the last 24 h as Markdown (or JSON), posted to REPORT_WEBHOOK_URL when set
 * npm run report -- purge [--days 90]     delete predictions and feedback older than the retention
 * npm run report -- erase --booking-id ID delete everything stored for a booking, audited under its pseudonym
 * Uses the service's database settings (DATABASE_URL, or PGlite in DATA_DIR) and its business settings
 * (LATE_THRESHOLD_MINUTES, COST_PER_DELAY_MINUTE); erase, its BOOKING_REF_KEY.
 */
const usage = 'npm run report -- ab [--days 30] | daily [--json] | purge [--days 90] | erase --booking-id ID';
const { command, values, config } = startCli(usage, ['ab', 'daily', 'purge', 'erase'], {
  days: { type: 'string' },
  json: { type: 'boolean' },
  'booking-id': { type: 'string' },
});
if (command === 'erase') {
  if (values.days !== undefined || values.json !== undefined)
    fail(`erase takes --booking-id ID and nothing else\nusage: ${usage}`);
  if (!values['booking-id']) fail(`erase needs --booking-id ID\nusage: ${usage}`);
  // A pseudonym under a key of this run alone could never be matched to the booking again.
  if (!config.bookingRefKey)
    fail(
      'erase records the booking under its pseudonym: set BOOKING_REF_KEY (or BOOKING_REF_KEY_FILE) to the key the service runs with',
    );
} else if (values['booking-id'] !== undefined) fail(`${command} takes no --booking-id\nusage: ${usage}`);
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
  } else if (command === 'erase') {
    // One line naming the booking by its pseudonym only, a failure too (a failed query's message holds the id):
    // the output of a Job or a CI run may be kept in its logs.
    try {
      const erased = await eraseBooking(database.db, {
        bookingId: values['booking-id'] as string,
        bookingRef: bookingRefs(config.bookingRefKey as string),
        actor: cliActor(),
      });
      const found = erased.predictions + erased.feedback + erased.scored;
      console.log(
        found > 0
          ? `erased booking ${erased.bookingRef}: ${erased.predictions} predictions, ${erased.feedback} feedback, ${erased.scored} scored; recorded as erasure ${erased.id}`
          : `nothing stored for booking ${erased.bookingRef}; the request is recorded as erasure ${erased.id}`,
      );
    } catch (err) {
      const reason = redactedMessage(err).replace(/\s*\n\s*/g, ' ');
      console.error(`erase failed, all or nothing (erasures records each erasure done): ${reason}`);
      process.exitCode = 1;
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
