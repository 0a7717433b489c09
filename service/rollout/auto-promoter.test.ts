import { readFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { flagChanges } from '../../db/schema.js';
import { parseFlagConfig } from '../flags/flag-config.js';
import type { FlagStatus } from '../flags/flag-service.js';
import type { Database } from '../storage/database.js';
import { freshPglite, freshPostgres, postgresAvailable } from '../test-support/databases.js';
import {
  eventually,
  flagServiceOn,
  flagsDocument,
  silentLogger,
  tempDir,
  testMetrics,
  writeFlags,
} from '../test-support/harness.js';
import { type ServiceProcess, scrapeMetrics, startService, waitForReady } from '../test-support/process.js';
import {
  type AutoPromoterOptions,
  createAutoPromoter,
  LIMITS,
  type PromotionCheck,
  promotionChecks,
} from './auto-promoter.js';
import { createRolloutService } from './rollout-service.js';

const SELECTOR = 'job="delay-prediction", namespace="delay"';
const CHECKS = promotionChecks(SELECTOR);
/**
 * A stand-in for Prometheus' query API answering each promotion query with a chosen value (or nothing); while
 * `slow` holds a gate, every query waits for it to open: a Prometheus that answers slowly.
 */
let answers: Partial<Record<PromotionCheck, string | undefined>> = {};
let gate: Promise<void> | null = null;
let queriesReceived = 0;
function slow() {
  let open = () => {};
  gate = new Promise<void>((resolve) => {
    open = resolve;
  });
  return () => {
    gate = null;
    open();
  };
}
const server = createServer(async (req, res) => {
  queriesReceived += 1;
  if (gate) await gate;
  const expr = new URL(req.url ?? '/', 'http://x').searchParams.get('query');
  const name = (Object.keys(CHECKS) as PromotionCheck[]).find((k) => CHECKS[k] === expr);
  const value = name ? answers[name] : undefined;
  res.setHeader('content-type', 'application/json');
  res.end(
    JSON.stringify({
      status: 'success',
      data: { resultType: 'vector', result: value === undefined ? [] : [{ metric: {}, value: [0, value] }] },
    }),
  );
});
let url = '';
beforeAll(async () => {
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
afterAll(() => new Promise<void>((r) => server.close(() => r())));
const open: { close(): Promise<unknown> }[] = [];
afterEach(async () => {
  gate = null;
  for (const x of open.splice(0).reverse()) await x.close();
});

const healthy = { samples: '500', mae: '1.7', fallbackRatio: '0.01', latencyP95: '0.004' };
const DAY = 86_400_000;

async function promoterAt(
  mlWeight: number,
  ageMs: number,
  options: Partial<AutoPromoterOptions> = {},
  database?: Database,
) {
  const { file, flags } = await flagServiceOn({ mlWeight });
  await flags.close();
  const m = testMetrics();
  const rollout = createRolloutService({
    flagsFile: file,
    logger: silentLogger,
    ...(database ? { db: database.db } : {}),
  });
  // What this process routes on: the status it had when the check started (the flag file poll is not running).
  const status = (): FlagStatus => ({
    ...flags.status(),
    last_changed_at: new Date(Date.now() - ageMs).toISOString(),
  });
  const promoter = createAutoPromoter({
    prometheusUrl: url,
    selector: SELECTOR,
    rollout,
    flagStatus: status,
    logger: silentLogger,
    soakMs: DAY,
    minSamples: 200,
    metrics: m.metrics,
    ...options,
  });
  return { promoter, file, rollout, metricValue: m.value };
}

/** Starts a check and returns it once its queries wait on the slow Prometheus. */
async function checkWaitingOnPrometheus(promoter: ReturnType<typeof createAutoPromoter>) {
  const release = slow();
  const before = queriesReceived;
  const decision = promoter.check();
  await eventually(
    () => queriesReceived - before,
    (n) => n === Object.keys(CHECKS).length,
  );
  return { decision, release };
}

const rollbackBy = { actor: 'alertmanager', action: 'rollback' as const, alertName: 'DelayMlErrorRatioHigh' };

describe('automatic promotion', () => {
  it("reads only its own deployment's series: every query's selector carries the matchers", () => {
    for (const [name, expr] of Object.entries(CHECKS)) {
      const selectors = [...expr.matchAll(/\{([^}]*)\}/g)].map((m) => m[1]);
      expect(selectors.length, name).toBe(1);
      expect(selectors[0], name).toContain(SELECTOR);
    }
    expect(promotionChecks('').fallbackRatio).toBe(
      'max(max_over_time(:delay_ml_fallback:ratio_rate5m{}[1h]))',
    );
  });

  it('moves to the next step after a healthy soak', async () => {
    answers = healthy;
    const { promoter, file, metricValue } = await promoterAt(10, DAY + 1000);
    expect(await promoter.check()).toEqual({ action: 'promoted', from: 10, to: 25 });
    expect(parseFlagConfig(readFileSync(file, 'utf8')).mlPercentage).toBe(25);
    expect(await metricValue('delay.rollout.promotion_checks', { outcome: 'promoted' })).toBe(1);
  });

  it('voids a promotion judged at 10% when a rollback lands while Prometheus answers', async () => {
    answers = healthy;
    const { promoter, file, rollout, metricValue } = await promoterAt(10, DAY + 1000);
    const { decision, release } = await checkWaitingOnPrometheus(promoter);
    expect((await rollout.setPercentage(0, rollbackBy)).changed).toBe(true);
    release();
    expect(await decision).toEqual({
      action: 'voided',
      reason:
        'the flag changed since the judgement: gbt-v2 10, heuristic 90 judged, gbt-v2 0, heuristic 100 found',
    });
    expect(parseFlagConfig(readFileSync(file, 'utf8')).mlPercentage).toBe(0);
    expect(await metricValue('delay.rollout.promotion_checks', { outcome: 'voided' })).toBe(1);
    expect(await metricValue('delay.rollout.promotion_checks', { outcome: 'promoted' })).toBe(0);
  });

  it('voids it too when a person changes the share meanwhile, or puts ML back where it was after a rollback', async () => {
    answers = healthy;
    const database = await freshPglite();
    open.push(database);
    const { promoter, file, rollout } = await promoterAt(10, DAY + 1000, {}, database);
    const person = { actor: 'cli:ops', action: 'enable' as const };

    const raised = await checkWaitingOnPrometheus(promoter);
    await rollout.setPercentage(50, person);
    raised.release();
    expect(await raised.decision).toMatchObject({
      action: 'voided',
      reason: expect.stringMatching(/gbt-v2 50, heuristic 50 found$/),
    });
    expect(parseFlagConfig(readFileSync(file, 'utf8')).mlPercentage).toBe(50);

    // Back at 10% after a rollback: the flag holds what was judged, the audit says what happened between.
    await rollout.setPercentage(10, person);
    const undone = await checkWaitingOnPrometheus(promoter);
    await rollout.setPercentage(0, rollbackBy);
    await rollout.setPercentage(10, person);
    undone.release();
    expect(await undone.decision).toEqual({
      action: 'voided',
      reason: 'alertmanager rollback 10 -> 0 since the judgement at 10%',
    });
    expect(parseFlagConfig(readFileSync(file, 'utf8')).mlPercentage).toBe(10);
    const promotions = (await database.db.select().from(flagChanges)).filter((r) => r.action === 'promote');
    expect(promotions).toEqual([]);
  });

  it.each([
    ['no data', {}, /no data for samples, mae, fallbackRatio, latencyP95/],
    ['too few samples', { ...healthy, samples: '120' }, /120 scored ML bookings, 200 needed/],
    ['a bad MAE', { ...healthy, mae: String(LIMITS.mae + 0.1) }, /mae 2.6 above 2.5/],
    ['a high fallback ratio', { ...healthy, fallbackRatio: '0.3' }, /fallbackRatio 0.3 above 0.1/],
    ['slow predictions', { ...healthy, latencyP95: '0.4' }, /latencyP95 0.4 above 0.15/],
  ])('holds the step on %s', async (_name, values, reason) => {
    answers = values;
    const { promoter } = await promoterAt(25, DAY + 1000);
    const decision = await promoter.check();
    expect(decision.action).toBe('held');
    expect(decision.action === 'held' && decision.reason).toMatch(reason);
  });

  it('holds while the step soaks, never promotes from 0%, and stops at 100%', async () => {
    answers = healthy;
    expect((await (await promoterAt(25, 1000)).promoter.check()).action).toBe('held');
    expect(await (await promoterAt(0, 2 * DAY)).promoter.check()).toMatchObject({
      reason: expect.stringContaining('ML is off'),
    });
    expect(await (await promoterAt(100, 2 * DAY)).promoter.check()).toMatchObject({
      reason: 'the rollout is complete',
    });
  });

  it('holds when Prometheus does not answer', async () => {
    const { file, flags } = await flagServiceOn({ mlWeight: 10 });
    await flags.close();
    const promoter = createAutoPromoter({
      prometheusUrl: 'http://127.0.0.1:1',
      selector: SELECTOR,
      rollout: createRolloutService({ flagsFile: file, logger: silentLogger }),
      flagStatus: () => ({
        ...flags.status(),
        last_changed_at: new Date(Date.now() - 2 * DAY).toISOString(),
      }),
      logger: silentLogger,
      soakMs: DAY,
      minSamples: 200,
    });
    expect(await promoter.check()).toMatchObject({
      action: 'held',
      reason: expect.stringContaining('Prometheus did not answer'),
    });
  });
});

describe('automatic promotion on several replicas', () => {
  it('acts only while this replica leads', async () => {
    answers = healthy;
    let leads = false;
    const { promoter: follower, file } = await promoterAt(10, 2 * DAY, {
      leadership: { isLeader: async () => leads },
    });
    expect(await follower.check()).toEqual({
      action: 'held',
      reason: 'another replica leads the promotion (Postgres advisory lock)',
    });
    expect(parseFlagConfig(readFileSync(file, 'utf8')).mlPercentage).toBe(10);
    leads = true;
    expect(await follower.check()).toEqual({ action: 'promoted', from: 10, to: 25 });
    expect(parseFlagConfig(readFileSync(file, 'utf8')).mlPercentage).toBe(25);
  });
});

const hasPostgres = await postgresAvailable();
const TOKEN = 'promotion-race-token-0123456789';

describe.skipIf(!hasPostgres)('automatic promotion and the rollback webhook, on the service process', () => {
  it('voids the promotion a check judged while Prometheus was slow when a rollback reaches the webhook meanwhile', async () => {
    answers = healthy;
    const database = await freshPostgres();
    open.push(database);
    const flagsFile = join(tempDir('delay-promotion-race-'), 'flags.json');
    writeFlags(flagsFile, flagsDocument({ mlWeight: 10 }));
    // Prometheus answers nothing until the rollback has landed.
    const release = slow();
    const before = queriesReceived;
    const service: ServiceProcess = await startService({
      FLAGS_FILE: flagsFile,
      DATABASE_URL: database.url,
      ALERTMANAGER_WEBHOOK_TOKEN: TOKEN,
      AUTO_PROMOTE: 'true',
      PROMETHEUS_URL: url,
      AUTO_PROMOTE_SELECTOR: SELECTOR,
      AUTO_PROMOTE_SOAK_S: '1',
      AUTO_PROMOTE_INTERVAL_S: '1',
    });
    open.push({ close: () => service.stop('SIGTERM') });
    await waitForReady(service);
    await eventually(
      () => queriesReceived - before,
      (n) => n >= Object.keys(CHECKS).length,
      30_000,
    );

    const res = await fetch(`http://127.0.0.1:${service.port}/v1/webhooks/alertmanager`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${TOKEN}` },
      body: JSON.stringify({
        status: 'firing',
        alerts: [
          {
            status: 'firing',
            labels: { alertname: 'DelayMlErrorRatioHigh', rollback: 'true', signal: 'errors' },
          },
        ],
      }),
    });
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({ results: [{ outcome: 'rolled_back' }], ml_percentage: 0 });
    release();

    const checks = (m: Awaited<ReturnType<typeof scrapeMetrics>>, outcome: string) =>
      m('delay_rollout_promotion_checks_total', { outcome });
    const metric = await eventually(
      () => scrapeMetrics(service.metricsPort),
      (m) => checks(m, 'voided') === 1 && checks(m, 'held') >= 1,
      20_000,
    );
    expect(checks(metric, 'promoted')).toBe(0);
    expect(parseFlagConfig(readFileSync(flagsFile, 'utf8')).mlPercentage).toBe(0);
    const rows = await database.db.select().from(flagChanges).orderBy(flagChanges.id);
    expect(rows.map((r) => [r.actor, r.action, r.previousWeight, r.newWeight])).toEqual([
      ['alertmanager', 'rollback', 10, 0],
    ]);
    expect(service.output()).toMatch(/rollout promotion voided/);
    expect(service.output()).not.toMatch(/rollout promoted/);
  }, 90_000);
});
