import { spawnSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdirSync, readdirSync, readFileSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import postgres from 'postgres';
import { afterEach, describe, expect, it } from 'vitest';
import { feedback, predictions } from '../../db/schema.js';
import { createFeedbackService } from '../../service/feedback/feedback-service.js';
import { bookingRefs } from '../../service/privacy/booking-ref.js';
import { createReports } from '../../service/reports/reports.js';
import { createRolloutService } from '../../service/rollout/rollout-service.js';
import { type Database, openDatabase } from '../../service/storage/database.js';
import { createPredictionLog } from '../../service/storage/prediction-log.js';
import { presentOrSkip } from '../../service/test-support/availability.js';
import {
  freshPostgres,
  POSTGRES_ADMIN_URL,
  postgresAvailable,
  predictionRow,
} from '../../service/test-support/databases.js';
import { flagsFile, silentLogger, tempDir, testMetrics } from '../../service/test-support/harness.js';
import { runChild } from '../../service/test-support/run-child.js';

/*
 * deploy/backup/backup.sh as compose and Kubernetes run it, against the machine's Postgres: a dump restored into
 * an empty database answers the reports and the audit as the original; the retention prunes; a failed dump leaves
 * nothing. The script runs as a child process awaited, never synchronously: a long synchronous child would stall
 * this worker's RPC with Vitest.
 */
const SCRIPT = 'deploy/backup/backup.sh';
const hasPostgres = await postgresAvailable();
const hasTools =
  hasPostgres &&
  presentOrSkip(
    ['pg_dump', 'pg_restore'].every((tool) => spawnSync(tool, ['--version']).status === 0)
      ? null
      : 'pg_dump and pg_restore (apt install postgresql-client)',
  );

const HOUR = 3_600_000;
const DAY = 24 * HOUR;
const DUMP = /^delay-prediction-\d{8}T\d{6}Z\.dump$/;

const open: { close(): Promise<unknown> | unknown }[] = [];
afterEach(async () => {
  for (const x of open.splice(0).reverse()) await x.close();
});

const backup = (env: Record<string, string>) => runChild('sh', [SCRIPT], env);

/** A database of its own on the machine's Postgres, with nothing in it (no migrations), dropped on close. */
async function emptyDatabase(): Promise<string> {
  const name = `delay_restore_${randomUUID().replaceAll('-', '')}`;
  const admin = postgres(POSTGRES_ADMIN_URL, { max: 1, onnotice: () => {} });
  await admin.unsafe(`create database ${name}`);
  open.push({
    async close() {
      await admin.unsafe(`drop database if exists ${name} with (force)`);
      await admin.end({ timeout: 1 });
    },
  });
  const url = new URL(POSTGRES_ADMIN_URL);
  url.pathname = `/${name}`;
  return url.toString();
}

/** A file last modified `age` ms ago, as the dumps of earlier runs are. */
function oldFile(dir: string, name: string, age: number) {
  writeFileSync(join(dir, name), 'x');
  const then = new Date(Date.now() - age);
  utimesSync(join(dir, name), then, then);
}

async function fresh(): Promise<Database & { url: string }> {
  const d = await freshPostgres();
  open.push(d);
  return d;
}

/** Three weeks of traffic through the service's own writers: the prediction log, feedback, rollout changes. */
async function fill(d: Database) {
  const { metrics } = testMetrics();
  const log = createPredictionLog({
    insert: (rows, signal) => d.insertPredictions(rows, signal),
    bookingRef: bookingRefs('backup-test-booking-ref-key'),
    metrics,
    logger: silentLogger,
  });
  const now = Date.now();
  const ids: string[] = [];
  for (let i = 0; i < 300; i++) {
    const id = `b-${String(i).padStart(4, '0')}`;
    ids.push(id);
    // Spread over 20 days, none within 15 minutes of the daily report's 24 h edge: the reports run seconds apart.
    let age = HOUR + ((i * 7919) % 300) * (20 * DAY - HOUR) * (1 / 300);
    if (Math.abs(age - DAY) < 15 * 60_000) age += HOUR;
    const ml = i % 5 < 3;
    const actual = (i * 37) % 41;
    log.enqueue([
      predictionRow(id, {
        predictedAt: new Date(now - age),
        source: ml ? 'ml' : 'heuristic',
        variant: ml ? 'gbt-v2' : 'heuristic',
        modelVersion: ml ? 'gbt-v2' : null,
        delayMinutes: actual + ((i % 9) - 4),
        shadowHeuristicDelay: actual + ((i % 13) - 5),
        latencyMs: 1 + (i % 17),
      }),
    ]);
  }
  await log.drain(10_000);
  const feedback = createFeedbackService({ db: d.db, metrics, logger: silentLogger });
  const results = await feedback.submit(
    ids
      .filter((_, i) => i % 10 < 7)
      .map((id, i) => ({ booking_id: id, actual_delay_minutes: (i * 37) % 41 })),
  );
  expect(results.every((r) => r.outcome === 'recorded')).toBe(true);

  const rollout = createRolloutService({
    flagsFile: flagsFile({ mlWeight: 10 }),
    db: d.db,
    metrics,
    logger: silentLogger,
  });
  await rollout.setPercentage(25, { actor: 'cli:ops', action: 'enable', reason: 'second step' });
  await rollout.canary('gbt-v3', 5, { actor: 'cli:ops', action: 'canary' });
  await rollout.rollbackOn([
    {
      status: 'firing',
      labels: { alertname: 'DelayModelLosingToRulesFast', rollback: 'true', signal: 'feedback' },
      annotations: { summary: 'ML loses to the rules' },
      fingerprint: 'backup-test',
    },
  ]);
  await rollout.close(5000);
}

/** What the people who read the data see: the A/B report, the daily report and the rollout's audit trail. */
async function answers(d: Database) {
  const reports = createReports(d.db);
  try {
    const { generated_at: _, ...daily } = await reports.dailyReport();
    const audit = await createRolloutService({
      flagsFile: flagsFile(),
      db: d.db,
      logger: silentLogger,
    }).history(100);
    const stored = {
      predictions: await d.db.$count(predictions),
      feedback: await d.db.$count(feedback),
    };
    return { ab: await reports.abReport({ days: 30 }), daily, audit, stored };
  } finally {
    await reports.close();
  }
}

describe.skipIf(!hasTools)('deploy/backup/backup.sh', () => {
  it('writes a dump that restores into an empty database answering the reports and the audit as the original', async () => {
    const source = await fresh();
    await fill(source);
    const before = await answers(source);
    expect(before.audit.map((r) => r.action).sort()).toEqual(['canary', 'enable', 'rollback']);
    expect(before.ab.arms.ml.n).toBeGreaterThan(100);
    expect(before.daily.rollbacks).toBe(1);
    expect(before.stored).toEqual({ predictions: 300, feedback: 210 });

    const dir = tempDir('delay-backups-');
    const result = await backup({ DATABASE_URL: source.url, BACKUP_DIR: dir, RETENTION_DAYS: '90' });
    expect(result.code, result.stderr).toBe(0);
    const files = readdirSync(dir);
    expect(files).toHaveLength(1);
    const [file] = files as [string];
    expect(file).toMatch(DUMP);
    expect(result.stdout).toContain(`wrote ${join(dir, file)}`);
    // Personal data: the owner's alone.
    expect(statSync(join(dir, file)).mode & 0o777).toBe(0o600);

    const target = await emptyDatabase();
    const restore = await runChild('pg_restore', [
      '--exit-on-error',
      '--no-owner',
      `--dbname=${target}`,
      join(dir, file),
    ]);
    expect(restore.code, restore.stderr).toBe(0);
    // The service opens the restored database as its own: the migrations are recorded there, none runs again.
    const restored = await openDatabase({ url: target, dataDir: 'unused' });
    open.push(restored);
    expect(await answers(restored)).toEqual(before);
  });

  it('deletes the dumps older than RETENTION_DAYS and keeps the recent ones and files not its own', async () => {
    const source = await fresh();
    const dir = tempDir('delay-backups-');
    oldFile(dir, 'delay-prediction-20240101T020000Z.dump', 91 * DAY);
    oldFile(dir, 'delay-prediction-20240301T020000Z.dump', 89 * DAY);
    oldFile(dir, 'notes.txt', 400 * DAY);
    // A partial file of a run killed two days ago goes; one of a run that may still be going stays.
    oldFile(dir, '.delay-prediction-20240302T020000Z.dump.partial', 2 * DAY);
    oldFile(dir, '.delay-prediction-20240303T020000Z.dump.partial', HOUR);
    const result = await backup({ DATABASE_URL: source.url, BACKUP_DIR: dir, RETENTION_DAYS: '90' });
    expect(result.code, result.stderr).toBe(0);
    expect(result.stdout).toContain('older than the retention: ');
    const left = readdirSync(dir).sort();
    expect(left.filter((f) => !DUMP.test(f) || f.startsWith('delay-prediction-2024'))).toEqual([
      '.delay-prediction-20240303T020000Z.dump.partial',
      'delay-prediction-20240301T020000Z.dump',
      'notes.txt',
    ]);
    expect(left.filter((f) => DUMP.test(f) && !f.startsWith('delay-prediction-2024'))).toHaveLength(1);

    // A shorter retention prunes the recent one as well: the dump just written is all that is left of the dumps.
    const shorter = await backup({ DATABASE_URL: source.url, BACKUP_DIR: dir, RETENTION_DAYS: '30' });
    expect(shorter.code, shorter.stderr).toBe(0);
    expect(readdirSync(dir).filter((f) => f.startsWith('delay-prediction-2024'))).toEqual([]);
  });

  it('fails on a dump that fails, leaving no file, and still prunes what the retention forbids', async () => {
    const dir = tempDir('delay-backups-');
    oldFile(dir, 'delay-prediction-20240101T020000Z.dump', 100 * DAY);
    const missing = new URL(POSTGRES_ADMIN_URL);
    missing.pathname = `/delay_missing_${randomUUID().replaceAll('-', '')}`;
    const result = await backup({ DATABASE_URL: missing.toString(), BACKUP_DIR: dir });
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(/does not exist/);
    expect(result.stderr).toMatch(/backup: pg_dump failed \(exit 1\): no backup written/);
    expect(result.stdout).not.toMatch(/wrote/);
    // No dump, no partial file; the old dump is gone all the same.
    expect(readdirSync(dir)).toEqual([]);
  });

  it('refuses a wrong setting before dumping anything (exit 2)', async () => {
    const source = await fresh();
    const dir = tempDir('delay-backups-');
    for (const [env, message] of [
      [
        { RETENTION_DAYS: 'ninety' },
        /RETENTION_DAYS must be a positive whole number of days \(got 'ninety'\)/,
      ],
      [{ RETENTION_DAYS: '0' }, /RETENTION_DAYS must be a positive/],
      [
        { BACKUP_DIR: join(dir, 'absent') },
        /BACKUP_DIR .*absent is not a folder this user \(\d+\) can write/,
      ],
      [{ DATABASE_PASSWORD_FILE: join(dir, 'absent-password') }, /cannot read DATABASE_PASSWORD_FILE/],
    ] as const) {
      const result = await backup({ DATABASE_URL: source.url, BACKUP_DIR: dir, ...env });
      expect(result.code, JSON.stringify(env)).toBe(2);
      expect(result.stderr).toMatch(message);
    }
    expect(readdirSync(dir)).toEqual([]);
  });

  it('refuses an empty, truncated or foreign file as a backup: the whole archive must read back', async () => {
    const source = await fresh();
    const whole = tempDir('delay-backups-');
    expect((await backup({ DATABASE_URL: source.url, BACKUP_DIR: whole })).code).toBe(0);
    const [dump] = readdirSync(whole) as [string];
    const truncated = join(tempDir('delay-truncated-'), 'dump');
    const bytes = readFileSync(join(whole, dump));
    writeFileSync(truncated, bytes.subarray(0, bytes.length - 200));
    // A pg_dump that exits 0 having written nothing, a truncated archive (a full disk it did not notice), or
    // something else.
    const dir = tempDir('delay-backups-');
    for (const [written, message] of [
      ['true', /pg_dump wrote nothing: no backup written/],
      [`cat ${truncated}`, /the dump does not read back \(pg_restore\): no backup written/],
      ['printf PGDMP', /the dump does not read back \(pg_restore\): no backup written/],
    ] as const) {
      const bin = join(tempDir('delay-fake-bin-'), 'bin');
      mkdirSync(bin);
      writeFileSync(
        join(bin, 'pg_dump'),
        `#!/bin/sh\nfor a; do case $a in --file=*) ${written} > "\${a#--file=}";; esac; done\n`,
        { mode: 0o755 },
      );
      const result = await runChild('sh', [SCRIPT], {
        PATH: `${bin}:${process.env.PATH ?? ''}`,
        DATABASE_URL: source.url,
        BACKUP_DIR: dir,
      });
      expect(result.code, written).toBe(1);
      expect(result.stderr).toMatch(message);
      expect(readdirSync(dir)).toEqual([]);
    }
  });
});
