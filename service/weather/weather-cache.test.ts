import type { Redis } from 'ioredis';
import { afterEach, describe, expect, it } from 'vitest';
import { redisReady } from '../cache/redis.js';
import { NEUTRAL_WEATHER } from '../domain/weather.js';
import { silentLogger, testMetrics } from '../test-support/harness.js';
import { isolatedRedis, redisAvailable } from '../test-support/redis.js';
import { createWeatherCache, entryKey, lockKeyOf } from './weather-cache.js';

const redisClients: Redis[] = [];
afterEach(async () => {
  await Promise.all(redisClients.splice(0).map((r) => r.quit().catch(() => undefined)));
});

function cache(redis?: Redis) {
  const m = testMetrics();
  return {
    cache: createWeatherCache({ redis, staleMaxMs: 60_000, metrics: m.metrics, logger: silentLogger }),
    metricValue: m.value,
  };
}

const key = entryKey('current', '48.900:2.400');
const entry = { fetchedAt: 1_700_000_000_000, data: NEUTRAL_WEATHER };

describe('weather cache keys', () => {
  it('name the endpoint and the cell, with the lock beside the entry', () => {
    expect(key).toBe('weather:v1:current:48.900:2.400');
    expect(lockKeyOf(key)).toBe('weather:v1:current:48.900:2.400:lock');
  });
});

describe('weather cache without Redis', () => {
  it('keeps entries in process only', async () => {
    const { cache: c } = cache();
    expect(await c.store(key, entry)).toBe(entry);
    expect(c.l1Get(key)).toEqual(entry);
    expect(await c.l2Get(key)).toBeUndefined();
    expect(await c.sizes()).toEqual({ l1: 1, l2: null });
  });
});

describe('weather cache when Redis fails', () => {
  it('reads a miss, still keeps the entry in process, and counts each failure', async () => {
    const down = () => Promise.reject(new Error('down'));
    const failing = { get: down, set: down, keys: down } as unknown as Redis;
    const { cache: c, metricValue } = cache(failing);
    await c.store(key, entry);
    expect(c.l1Get(key)).toEqual(entry);
    expect(await c.l2Get(key)).toBeUndefined();
    expect(await c.sizes()).toEqual({ l1: 1, l2: 0 });
    expect(await metricValue('delay.weather.cache_errors', { operation: 'set' })).toBe(1);
    expect(await metricValue('delay.weather.cache_errors', { operation: 'get' })).toBe(1);
  });

  it('counts entries in Redis, not their locks', async () => {
    const keys = async () => [key, lockKeyOf(key), entryKey('forecast', '1.000:2.000')];
    const { cache: c } = cache({ keys } as unknown as Redis);
    expect((await c.sizes()).l2).toBe(2);
  });
});

const hasRedis = await redisAvailable();

describe.skipIf(!hasRedis)('weather cache on the real Redis', () => {
  it('shares what one replica stores, for as long as it may be served stale', async () => {
    const shared = await isolatedRedis();
    const second = shared.duplicate();
    redisClients.push(shared, second);
    await redisReady(second, 2000);
    const a = cache(shared).cache;
    const b = cache(second).cache;
    await a.store(key, entry);
    expect(b.l1Get(key)).toBeUndefined();
    expect(await b.l2Get(key)).toEqual(entry);
    const ttl = await shared.pttl(key);
    expect(ttl).toBeGreaterThan(50_000);
    expect(ttl).toBeLessThanOrEqual(60_000);
    b.l1Set(key, entry);
    expect(b.l1Get(key)).toEqual(entry);
  });
});
