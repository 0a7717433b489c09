import type { Redis } from 'ioredis';
import { afterEach, describe, expect, it } from 'vitest';
import { redisReady } from '../cache/redis.js';
import { testMetrics } from '../test-support/harness.js';
import { isolatedRedis, redisAvailable } from '../test-support/redis.js';
import { createCallBudget } from './call-budget.js';
import { CallRefused } from './call-refused.js';

const redisClients: Redis[] = [];
afterEach(async () => {
  await Promise.all(redisClients.splice(0).map((r) => r.quit().catch(() => undefined)));
});

function budget(dailyBudget: number, overrides: { redis?: Redis; now?: () => number } = {}) {
  const m = testMetrics();
  return {
    budget: createCallBudget({ dailyBudget, metrics: m.metrics, now: Date.now, ...overrides }),
    metricValue: m.value,
  };
}

const refusal = (p: Promise<unknown>) =>
  p.then(
    () => null,
    (err: unknown) => (err instanceof CallRefused ? err.reason : err),
  );

describe('call budget without Redis', () => {
  it('lets the budget through, then refuses with reason budget, and reports what is left', async () => {
    const { budget: b, metricValue } = budget(3);
    for (let i = 0; i < 3; i++) await b.spend();
    expect(await metricValue('delay.weather.budget_remaining')).toBe(0);
    expect(await refusal(b.spend())).toBe('budget');
    expect((await b.usage()).used).toBe(4);
  });

  it('starts again on the next UTC day', async () => {
    let clock = Date.parse('2026-03-01T23:59:00Z');
    const { budget: b, metricValue } = budget(1, { now: () => clock });
    await b.spend();
    expect(await refusal(b.spend())).toBe('budget');
    clock = Date.parse('2026-03-02T00:01:00Z');
    expect(await b.usage()).toEqual({ day: '2026-03-02', used: 0 });
    await b.spend();
    expect(await b.usage()).toEqual({ day: '2026-03-02', used: 1 });
    expect(await metricValue('delay.weather.budget_remaining')).toBe(0);
  });

  it('reports the whole budget before any call', async () => {
    const { budget: b, metricValue } = budget(7);
    expect(await metricValue('delay.weather.budget_remaining')).toBe(7);
    expect((await b.usage()).used).toBe(0);
  });
});

describe('call budget when Redis fails', () => {
  it('counts in process, and counts the failure', async () => {
    const failing = {
      multi: () => ({ incr: () => ({ expire: () => ({ exec: () => Promise.reject(new Error('down')) }) }) }),
    } as unknown as Redis;
    const { budget: b, metricValue } = budget(2, { redis: failing });
    await b.spend();
    await b.spend();
    expect(await refusal(b.spend())).toBe('budget');
    expect(await metricValue('delay.weather.cache_errors', { operation: 'budget' })).toBe(3);
  });
});

const hasRedis = await redisAvailable();

describe.skipIf(!hasRedis)('call budget shared through the real Redis', () => {
  it('two replicas spend one budget', async () => {
    const shared = await isolatedRedis();
    const second = shared.duplicate();
    redisClients.push(shared, second);
    await redisReady(second, 2000);
    const a = budget(3, { redis: shared }).budget;
    const b = budget(3, { redis: second }).budget;
    await a.spend();
    await b.spend();
    await a.spend();
    expect(await refusal(b.spend())).toBe('budget');
    expect((await a.usage()).used).toBe(4);
    expect(await shared.ttl(`weather:budget:${(await a.usage()).day}`)).toBeGreaterThan(86_400);
  });
});
