import { readFileSync } from 'node:fs';
import { eq } from 'drizzle-orm';
import postgres from 'postgres';
import { afterEach, describe, expect, it } from 'vitest';
import { flagChanges } from '../../db/schema.js';
import { parseFlagConfig } from '../flags/flag-config.js';
import { type FlagService, startFlagService } from '../flags/flag-service.js';
import { type Database, openDatabase } from '../storage/database.js';
import { freshPostgres, postgresAvailable } from '../test-support/databases.js';
import {
  booking,
  eventually,
  flagsDocument,
  flagsFile as newFlagsFile,
  postJson,
  silentLogger,
  testApp,
  testMetrics,
  writeFlags,
} from '../test-support/harness.js';
import { migratedDataDir } from '../test-support/process.js';
import {
  createRollbackLatch,
  holdInForce,
  type LatchHold,
  RollbackLatchHeldError,
  readAuditedLatch,
} from './rollback-latch.js';
import { createRolloutService } from './rollout-service.js';

const hasPostgres = await postgresAvailable();
const open: { close(): Promise<unknown> }[] = [];
afterEach(async () => {
  for (const x of open.splice(0).reverse()) await x.close();
});

const at = (minute: number) => new Date(Date.UTC(2026, 0, 1, 8, minute));
const hold = (minute: number, alert = 'DelayMlErrorRatioHigh'): LatchHold => ({
  since: at(minute),
  actor: 'alertmanager',
  alert,
  reason: 'errors signal',
});
const rollbackAlert = {
  status: 'firing' as const,
  labels: { alertname: 'DelayModelLosingToRulesFast', rollback: 'true', signal: 'feedback' },
  annotations: { summary: 'ML loses to the rules' },
  fingerprint: 'latch-test',
};
/** Enough for the flag file's 50 ms poll and the provider's reload of its copy. */
const CONFIRM_MS = 300;

describe('the hold in force', () => {
  it('is the first hold after the last lift, from the audit or from this process', () => {
    expect(holdInForce(null, null, null)).toBeNull();
    expect(holdInForce({ hold: hold(5), liftedAt: at(1) }, null, null)).toEqual(hold(5));
    // This process rolled back before the audit's hold: its own hold took the latch first.
    expect(holdInForce({ hold: hold(5), liftedAt: null }, hold(3, 'Mine'), null)?.alert).toBe('Mine');
    // A lift after every hold lifts them all, whichever side saw it.
    expect(holdInForce({ hold: hold(5), liftedAt: null }, hold(3), at(6))).toBeNull();
    expect(holdInForce({ hold: null, liftedAt: at(6) }, hold(3), null)).toBeNull();
    // A rollback after the lift holds again.
    expect(holdInForce({ hold: null, liftedAt: at(6) }, hold(7), null)).toEqual(hold(7));
  });
});

/** A latch on `db` watching a flag file (a new one at `mlWeight`, or `file`), with its rollout service and metrics. */
async function replica(
  database: Database | undefined,
  { shared, mlWeight = 50, file }: { shared: boolean; mlWeight?: number; file?: string },
) {
  const m = testMetrics();
  const flagsFile = file ?? newFlagsFile({ mlWeight });
  const flags = await startFlagService({
    flags: { kind: 'file', file: flagsFile, pollIntervalMs: 50 },
    logger: silentLogger,
    metrics: m.metrics,
  });
  const latch = createRollbackLatch({
    flags,
    ...(database ? { db: database.db } : {}),
    shared,
    source: `flag file ${flagsFile}`,
    metrics: m.metrics,
    logger: silentLogger,
    pollMs: 60_000,
    confirmMs: CONFIRM_MS,
  });
  await latch.start();
  const rollout = createRolloutService({
    flagsFile,
    ...(database ? { db: database.db } : {}),
    metrics: m.metrics,
    logger: silentLogger,
    routing: flags,
    latch: latch.keeper,
  });
  open.push({ close: () => flags.close() }, latch);
  const routed = latch.guard(flags);
  /** The variants of 200 bookings, as the prediction path gets them. */
  const variants = async () =>
    Promise.all(Array.from({ length: 200 }, (_, i) => routed.modelVariant(`latch-${i}`)));
  /** The latch judged after the confirmation delay, on a read begun after it. */
  const settled = async () => {
    await new Promise((r) => setTimeout(r, CONFIRM_MS + 50));
    await latch.refresh();
  };
  return { flags, routed, file: flagsFile, latch, rollout, variants, settled, metric: m.value };
}

const refusedRows = (database: Database) =>
  database.db.select().from(flagChanges).where(eq(flagChanges.action, 'refused'));
const onFlag = async (flags: FlagService, mlPercentage: number) =>
  eventually(
    () => flags.status().ml_percentage,
    (p) => p === mlPercentage,
  );

describe.skipIf(!hasPostgres)('the rollback latch on a shared Postgres', () => {
  async function database() {
    const db = await freshPostgres();
    open.push(db);
    return db;
  }

  it('reads the first rollback after the last enable, by the time of the change, whenever its row landed', async () => {
    const db = await database();
    const row = (minute: number, action: string, alertName: string | null = null) => ({
      at: at(minute),
      actor: action === 'rollback' ? 'alertmanager' : 'cli:ops',
      action,
      flag: 'delay-model',
      alertName,
    });
    expect(await readAuditedLatch(db.db)).toEqual({ hold: null, liftedAt: null });
    await db.db.insert(flagChanges).values([row(1, 'rollback', 'A'), row(2, 'enable')]);
    expect((await readAuditedLatch(db.db)).hold).toBeNull();
    // Written late (its insert retried): a rollback made before the enable does not hold after it.
    await db.db.insert(flagChanges).values(row(1, 'rollback', 'Late'));
    expect((await readAuditedLatch(db.db)).hold).toBeNull();
    await db.db
      .insert(flagChanges)
      .values([row(3, 'rollback', 'B'), row(4, 'rollback', 'C'), row(5, 'refused'), row(6, 'promote')]);
    expect(await readAuditedLatch(db.db)).toMatchObject({
      hold: { since: at(3), alert: 'B', actor: 'alertmanager' },
      liftedAt: at(2),
    });
  });

  it('holds ML off on two replicas after a rollback, refuses a flag file put back at 10% once, and a person enable lifts it on both', async () => {
    const db = await database();
    const a = await replica(db, { shared: true });
    const b = await replica(db, { shared: true, file: a.file });
    expect(a.latch.held()).toBe(false);
    expect(await a.metric('delay.rollout.latch_held')).toBe(0);

    const { results } = await a.rollout.rollbackOn([rollbackAlert]);
    expect(results[0]?.outcome).toBe('rolled_back');
    expect(a.latch.held()).toBe(true);
    await onFlag(b.flags, 0);
    await b.latch.refresh();
    expect(b.latch.status()).toMatchObject({
      held: true,
      scope: 'shared',
      alert: 'DelayModelLosingToRulesFast',
      actor: 'alertmanager',
      reason: 'feedback signal: ML loses to the rules',
      refused: null,
    });
    expect(await b.metric('delay.rollout.latch_held')).toBe(1);

    // git pull: the file asks for 10% again. Neither replica routes a booking to ML.
    writeFlags(a.file, flagsDocument({ mlWeight: 10 }));
    await Promise.all([onFlag(a.flags, 10), onFlag(b.flags, 10)]);
    for (const r of [a, b]) {
      // The provider reloads its copy of the file after the status reads it: until then it routes on 0%.
      const assigned = await eventually(r.variants, (v) =>
        v.some((x) => x.latched || x.variant !== 'heuristic'),
      );
      expect(assigned.every((v) => v.variant === 'heuristic')).toBe(true);
      // The bookings the flag sends to gbt-v2 (10%) are the ones held back, and say so.
      const latched = assigned.filter((v) => v.latched).length;
      expect(latched).toBeGreaterThan(5);
      expect(latched).toBeLessThan(45);
    }
    await Promise.all([a.settled(), b.settled()]);
    await Promise.all([a.latch.refresh(), b.latch.refresh()]);
    const refused = await refusedRows(db);
    expect(refused).toHaveLength(1);
    expect(refused[0]).toMatchObject({
      actor: `flag file ${a.file}`,
      previousWeight: 0,
      newWeight: 10,
      modelVersion: 'gbt-v2',
      alertName: 'DelayModelLosingToRulesFast',
    });
    expect(refused[0]?.reason).toMatch(/asks gbt-v2 10%, heuristic 90% while the rollback latch holds/);
    for (const r of [a, b]) {
      expect(await r.metric('delay.rollout.latch_refusals', { source: 'file' })).toBe(1);
      expect(r.routed.status().rollback_latch?.refused).toEqual({
        ml_percentage: 10,
        split: [
          { variant: 'gbt-v2', weight: 10 },
          { variant: 'heuristic', weight: 90 },
        ],
      });
    }

    // A person re-enables at the share the file already asks: no change to the file, and the latch is lifted.
    const enable = await b.rollout.setPercentage(10, { actor: 'cli:ops', action: 'enable' });
    expect(enable).toMatchObject({ changed: false, audit: 'written' });
    await a.latch.refresh();
    for (const r of [a, b]) {
      expect(r.latch.held()).toBe(false);
      const ml = (await r.variants()).filter((v) => v.variant === 'gbt-v2').length;
      expect(ml).toBeGreaterThan(5);
      expect(ml).toBeLessThan(45);
      expect(await r.metric('delay.rollout.latch_held')).toBe(0);
    }
    expect(await refusedRows(db)).toHaveLength(1);
  });

  it("does not refuse a person's enable whose audit row lands after its flag change, nor judge while flag_changes cannot be read", async () => {
    const db = await database();
    const a = await replica(db, { shared: true });
    const b = await replica(db, { shared: true, file: a.file });
    await a.rollout.rollbackOn([rollbackAlert]);
    await b.latch.refresh();
    expect(b.latch.held()).toBe(true);
    // The enable changes the flag; its audit row waits behind a lock, as do replica b's reads of the latch.
    const locker = postgres(db.url, { max: 1, onnotice: () => {} });
    const held = await locker.reserve();
    try {
      await held`begin`;
      await held`lock table flag_changes in access exclusive mode`;
      const enable = await a.rollout.setPercentage(25, { actor: 'cli:ops', action: 'enable' });
      expect(enable.audit).toBe('late');
      await onFlag(b.flags, 25);
      const assigned = await eventually(b.variants, (v) =>
        v.some((x) => x.latched || x.variant !== 'heuristic'),
      );
      expect(assigned.every((v) => v.variant === 'heuristic')).toBe(true);
      await b.settled();
      expect(b.latch.held()).toBe(true);
      expect(await b.metric('delay.rollout.latch_errors', { operation: 'read' })).toBeGreaterThan(0);
      await held`commit`;
    } finally {
      held.release();
      await locker.end({ timeout: 1 });
    }
    await eventually(
      async () => (await a.rollout.history(1))[0]?.action,
      (action) => action === 'enable',
    );
    await b.settled();
    expect(b.latch.held()).toBe(false);
    expect((await b.variants()).some((v) => v.variant === 'gbt-v2')).toBe(true);
    expect(await refusedRows(db)).toEqual([]);
    expect(await b.metric('delay.rollout.latch_refusals')).toBe(0);
  }, 20_000);

  it('routes a flag configuration older than the rollback to the heuristic without auditing it: it is the one replaced', async () => {
    const db = await database();
    const a = await replica(db, { shared: true });
    a.latch.keeper.taken({ ...hold(0), since: new Date() });
    expect((await a.variants()).every((v) => v.variant === 'heuristic')).toBe(true);
    await a.settled();
    expect(await refusedRows(db)).toEqual([]);
    expect(a.latch.status().refused).toMatchObject({ ml_percentage: 50 });
  });

  it('refuses a promotion while it holds, changing nothing', async () => {
    const db = await database();
    const a = await replica(db, { shared: true });
    await a.rollout.rollbackOn([rollbackAlert]);
    await expect(a.rollout.setPercentage(10, { actor: 'cli:ops', action: 'promote' })).rejects.toBeInstanceOf(
      RollbackLatchHeldError,
    );
    await expect(
      a.rollout.promote({ mlPercentage: 0, activeModelVersions: [], split: null }, 10, {
        actor: 'auto-promoter',
        action: 'promote',
      }),
    ).rejects.toThrow(/rollback latch holds since .*DelayModelLosingToRulesFast.*rollout enable/);
    expect(parseFlagConfig(readFileSync(a.file, 'utf8')).mlPercentage).toBe(0);
  });

  it('keeps the latch it read while flag_changes cannot be read, and counts each failed read', async () => {
    const db = await database();
    const a = await replica(db, { shared: true });
    const b = await replica(db, { shared: true, file: a.file });
    await a.rollout.rollbackOn([rollbackAlert]);
    await b.latch.refresh();
    const admin = postgres(db.url, { max: 1, onnotice: () => {} });
    try {
      await admin`alter table flag_changes rename to flag_changes_away`;
      await b.latch.refresh();
      expect(b.latch.held()).toBe(true);
      expect(b.latch.status().last_error?.message).toMatch(/cannot read the latch from flag_changes/);
      expect(await b.metric('delay.rollout.latch_errors', { operation: 'read' })).toBe(1);
      await admin`alter table flag_changes_away rename to flag_changes`;
      await b.latch.refresh();
      expect(b.latch.status()).toMatchObject({ held: true, last_error: null });
    } finally {
      await admin.end({ timeout: 1 });
    }
  });
});

describe('the rollback latch without a shared database (PGlite)', () => {
  it('holds in this process, audits a refused change in its own database, and is gone after a restart', async () => {
    // A migrated PGlite folder, copied: a fresh one takes seconds to migrate.
    const db = await openDatabase({ dataDir: await migratedDataDir() });
    open.push(db);
    const a = await replica(db, { shared: false });
    await a.rollout.rollbackOn([rollbackAlert]);
    expect(a.latch.status()).toMatchObject({ held: true, scope: 'process' });
    writeFlags(a.file, flagsDocument({ mlWeight: 10 }));
    await onFlag(a.flags, 10);
    await a.settled();
    expect(await refusedRows(db)).toHaveLength(1);
    expect(await a.metric('delay.rollout.latch_refusals', { source: 'file' })).toBe(1);

    // The prediction path says why a booking the flag sent to a model got the heuristic.
    const t = await testApp({ deps: { flags: a.routed } });
    const answered = await (
      await postJson(t.app, '/v1/predictions/batch', {
        bookings: Array.from({ length: 50 }, (_, i) => booking({ booking_id: `app-${i}` })),
      })
    ).json();
    const reasons = new Set(
      (answered.predictions as { fallback_reason: string | null }[]).map((p) => p.fallback_reason),
    );
    expect(reasons).toEqual(new Set([null, 'rollback_latch']));
    const flagStatus = await (await t.app.request('/v1/flags/status')).json();
    expect(flagStatus.rollback_latch).toMatchObject({
      held: true,
      scope: 'process',
      refused: { ml_percentage: 10 },
    });

    // A restart: the new process reads nothing from PGlite's audit, and routes ML at the flag's share.
    const restarted = await replica(db, { shared: false, file: a.file });
    expect(restarted.latch.held()).toBe(false);
    expect((await restarted.variants()).some((v) => v.variant === 'gbt-v2')).toBe(true);
  });

  it('is lifted by a person enable made through the same process', async () => {
    const a = await replica(undefined, { shared: false });
    await a.rollout.rollbackOn([rollbackAlert]);
    expect(a.latch.held()).toBe(true);
    await a.rollout.setPercentage(10, { actor: 'cli:ops', action: 'enable' });
    expect(a.latch.held()).toBe(false);
  });
});
