import { execFile, spawnSync } from 'node:child_process';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { sql } from 'drizzle-orm';
import { describe, expect, it } from 'vitest';
import { erasures, feedback, flagChanges, predictions } from '../../db/schema.js';
import { bookingRefs } from '../privacy/booking-ref.js';
import { openDatabase } from '../storage/database.js';
import { migratedDataDir } from '../test-support/process.js';

const env = (dataDir: string, extra: Record<string, string> = {}) => ({
  PATH: process.env.PATH ?? '',
  DATA_DIR: dataDir,
  ...extra,
});
const args = (rest: string[]) => ['--import', 'tsx', 'service/cli/reports-cli.ts', ...rest];
const run = (rest: string[], dataDir: string, extra: Record<string, string> = {}) =>
  spawnSync(process.execPath, args(rest), {
    encoding: 'utf8',
    env: env(dataDir, extra),
    // Once in CI on Node 24 the tool hung after its usage error: a hang fails here instead of stalling the suite.
    timeout: 30_000,
  });
/** Asynchronous: the test's own HTTP server must answer the tool while it runs. */
const runAsync = (rest: string[], dataDir: string, extra: Record<string, string>) =>
  new Promise<{ status: number | null; stdout: string; stderr: string }>((resolve) => {
    execFile(
      process.execPath,
      args(rest),
      { encoding: 'utf8', env: env(dataDir, extra), timeout: 30_000 },
      (err, stdout, stderr) =>
        resolve({ status: err ? (typeof err.code === 'number' ? err.code : null) : 0, stdout, stderr }),
    );
  });

const base = {
  endpoint: 'single',
  variant: 'heuristic',
  source: 'heuristic',
  intervalLow: 1,
  intervalHigh: 9,
  shadowHeuristicDelay: 4,
  features: [],
  weatherSource: 'default',
  latencyMs: 1,
};

describe('npm run report', () => {
  it('prints the A/B report and purges old rows from the configured database', async () => {
    const dataDir = await migratedDataDir();
    const database = await openDatabase({ dataDir });
    await database.db.insert(predictions).values([
      { ...base, bookingId: 'a', predictedAt: new Date(), delayMinutes: 4 },
      { ...base, bookingId: 'old', predictedAt: new Date(Date.now() - 200 * 86_400_000), delayMinutes: 4 },
    ]);
    await database.db.insert(feedback).values({ bookingId: 'a', actualDelayMinutes: 6 });
    await database.close();

    // The business figures at the configured threshold: 6 minutes late from 5, not flagged by the rules' 4.
    const ab = run(['ab', '--days', '30'], dataDir, { LATE_THRESHOLD_MINUTES: '5' });
    expect(ab.status, ab.stderr).toBe(0);
    const report = JSON.parse(ab.stdout);
    expect(report.arms.heuristic).toMatchObject({ n: 1, mae: 2 });
    expect(report.business).toMatchObject({
      late_threshold_minutes: 5,
      heuristic: { n: 1, late: 1, flagged: 0, anticipated_ratio: 0, buffer_shortfall_minutes: 2 },
    });
    const purge = run(['purge', '--days', '90'], dataDir);
    expect(JSON.parse(purge.stdout)).toEqual({
      purged: { predictions: 1, feedback: 0 },
      older_than_days: 90,
    });
    expect(run(['purge', '--days', 'soon'], dataDir).status).toBe(2);
    expect(run(['nothing'], dataDir).status).toBe(2);
  });

  it('erases a booking: its rows deleted, one audit row under its pseudonym, one line that never names it', async () => {
    const dataDir = await migratedDataDir();
    const key = 'reports-cli-test-booking-ref-key';
    const ref = bookingRefs(key);
    const database = await openDatabase({ dataDir });
    await database.db.insert(predictions).values([
      {
        ...base,
        bookingId: 'erase-me',
        predictedAt: new Date(),
        delayMinutes: 4,
        bookingRef: ref('erase-me'),
      },
      {
        ...base,
        bookingId: 'erase-me',
        predictedAt: new Date(),
        delayMinutes: 9,
        bookingRef: ref('erase-me'),
      },
      { ...base, bookingId: 'kept', predictedAt: new Date(), delayMinutes: 4 },
    ]);
    await database.db.insert(feedback).values({ bookingId: 'erase-me', actualDelayMinutes: 6 });
    await database.close();

    const withKey = { BOOKING_REF_KEY: key };
    const erased = run(['erase', '--booking-id', 'erase-me'], dataDir, withKey);
    expect(erased.status, erased.stderr).toBe(0);
    expect(erased.stdout).toBe(
      `erased booking ${ref('erase-me')}: 2 predictions, 1 feedback, 1 scored; recorded as erasure 1\n`,
    );
    const again = run(['erase', '--booking-id', 'erase-me'], dataDir, withKey);
    expect(again.status, again.stderr).toBe(0);
    expect(again.stdout).toBe(
      `nothing stored for booking ${ref('erase-me')}; the request is recorded as erasure 2\n`,
    );
    for (const out of [erased, again]) expect(out.stdout + out.stderr).not.toContain('erase-me');

    // Usage errors: no id, an empty one, options of other commands, an id for another command; and no key, with
    // which the audit's pseudonym could never be matched again.
    const refused = [
      run(['erase'], dataDir, withKey),
      run(['erase', '--booking-id='], dataDir, withKey),
      run(['erase', '--booking-id', 'kept', '--days', '3'], dataDir, withKey),
      run(['ab', '--booking-id', 'kept'], dataDir, withKey),
      run(['erase', '--booking-id', 'kept'], dataDir),
    ];
    expect(refused.map((r) => r.status)).toEqual([2, 2, 2, 2, 2]);
    expect(refused[0]?.stderr).toContain('erase needs --booking-id ID');
    expect(refused[4]?.stderr).toContain('set BOOKING_REF_KEY (or BOOKING_REF_KEY_FILE)');

    const after = await openDatabase({ dataDir });
    try {
      const left = await after.db.select({ id: predictions.bookingId }).from(predictions);
      expect(left).toEqual([{ id: 'kept' }]);
      expect(await after.db.select().from(feedback)).toEqual([]);
      const audit = await after.db.select().from(erasures).orderBy(erasures.id);
      expect(audit.map((a) => [a.actor, a.bookingRef, a.predictions, a.feedback, a.scored])).toEqual([
        [expect.stringMatching(/^cli:/), ref('erase-me'), 2, 1, 1],
        [expect.stringMatching(/^cli:/), ref('erase-me'), 0, 0, 0],
      ]);
      // A database that refuses the delete: the failed query's message would name the booking.
      await after.db.execute(sql`create function refuse_delete() returns trigger language plpgsql as $$
        begin raise exception 'deletes refused here'; end $$`);
      await after.db.execute(
        sql`create trigger refuse_delete before delete on predictions for each row execute function refuse_delete()`,
      );
    } finally {
      await after.close();
    }
    const failed = run(['erase', '--booking-id', 'kept'], dataDir, withKey);
    expect(failed.status).toBe(1);
    expect(failed.stderr).toMatch(/^erase failed, all or nothing .*deletes refused here\n$/);
    expect(failed.stderr).not.toContain('kept');
  });

  it('prints the last 24 h, posts its Markdown to REPORT_WEBHOOK_URL, and says so when the webhook refuses it', async () => {
    const dataDir = await migratedDataDir();
    const database = await openDatabase({ dataDir });
    const ml = { ...base, source: 'ml', variant: 'gbt-v2', modelVersion: 'gbt-v2' };
    await database.db.insert(predictions).values([
      // ML catches a 16-minute delay (high risk: 15 min or more); the rules served 4 for an on-time trip.
      { ...ml, bookingId: 'late', predictedAt: new Date(), delayMinutes: 15, shadowHeuristicDelay: 6 },
      { ...base, bookingId: 'on-time', predictedAt: new Date(), delayMinutes: 4 },
    ]);
    await database.db.insert(feedback).values([
      { bookingId: 'late', actualDelayMinutes: 16 },
      { bookingId: 'on-time', actualDelayMinutes: 3 },
    ]);
    await database.db.insert(flagChanges).values({
      actor: 'alertmanager',
      action: 'rollback',
      flag: 'delay-model',
      previousWeight: 10,
      newWeight: 0,
      modelVersion: 'gbt-v2',
      reason: 'ML loses to the rules',
      alertName: 'DelayModelLosingToRulesFast',
    });
    await database.close();

    const posted: { status: number; body: string }[] = [];
    let status = 200;
    const server = createServer((req, res) => {
      let body = '';
      req.on('data', (chunk) => {
        body += chunk;
      });
      req.on('end', () => {
        posted.push({ status, body });
        res.writeHead(status).end(status === 200 ? 'ok' : 'no such channel');
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/hooks/secret-token`;
    try {
      const json = await runAsync(['daily', '--json'], dataDir, { REPORT_WEBHOOK_URL: url });
      expect(json.status, json.stderr).toBe(0);
      const daily = JSON.parse(json.stdout);
      expect(daily).toMatchObject({
        window: '24h',
        predictions: 2,
        ml: 1,
        ml_share: 0.5,
        accuracy: { ml: { n: 1, mae: 1 }, heuristic: { n: 1, mae: 1 } },
        business: {
          ml: { late: 1, anticipated: 1, anticipated_ratio: 1 },
          heuristic_shadow_on_ml: { late: 1, anticipated: 0, anticipated_ratio: 0 },
        },
        reassignment_candidates: { ml: 1, heuristic: 0 },
        anomalies: 0,
        rollbacks: 1,
        flag_changes: [{ action: 'rollback', alert_name: 'DelayModelLosingToRulesFast', new_weight: 0 }],
      });
      // The chat gets the Markdown, whatever the tool printed.
      const text = JSON.parse(posted[0]?.body ?? '{}').text as string;
      expect(text).toContain('# Delay prediction, last 24 h');
      expect(text).toContain('| ML | 1 | 1.000 |');
      expect(text).toContain('DelayModelLosingToRulesFast');

      status = 500;
      const refused = await runAsync(['daily'], dataDir, { REPORT_WEBHOOK_URL: url });
      expect(refused.status).toBe(1);
      expect(refused.stdout).toContain('Rollbacks: 1');
      expect(refused.stderr).toContain(
        'the daily report was not posted to REPORT_WEBHOOK_URL: the webhook answered 500: no such channel',
      );
      expect(refused.stderr).not.toContain('secret-token');
      expect(posted).toHaveLength(2);
    } finally {
      server.close();
    }
  });
});
