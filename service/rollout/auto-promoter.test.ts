import { readFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseFlagConfig } from '../flags/flag-config.js';
import type { FlagStatus } from '../flags/flag-service.js';
import { flagServiceOn, silentLogger } from '../test-support/harness.js';
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
/** A stand-in for Prometheus' query API answering each promotion query with a chosen value (or nothing). */
let answers: Partial<Record<PromotionCheck, string | undefined>> = {};
const server = createServer((req, res) => {
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

const healthy = { samples: '500', mae: '1.7', fallbackRatio: '0.01', latencyP95: '0.004' };
const DAY = 86_400_000;

async function promoterAt(mlWeight: number, ageMs: number, options: Partial<AutoPromoterOptions> = {}) {
  const { file, flags } = await flagServiceOn({ mlWeight });
  await flags.close();
  const rollout = createRolloutService({ flagsFile: file, logger: silentLogger });
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
    ...options,
  });
  return { promoter, file };
}

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
    const { promoter, file } = await promoterAt(10, DAY + 1000);
    expect(await promoter.check()).toEqual({ action: 'promoted', from: 10, to: 25 });
    expect(parseFlagConfig(readFileSync(file, 'utf8')).mlPercentage).toBe(25);
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
