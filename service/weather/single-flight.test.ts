import type { Redis } from 'ioredis';
import { afterEach, describe, expect, it } from 'vitest';
import { redisReady } from '../cache/redis.js';
import { NEUTRAL_WEATHER } from '../domain/weather.js';
import { silentLogger, testMetrics } from '../test-support/harness.js';
import { isolatedRedis, redisAvailable } from '../test-support/redis.js';
import { CallRefused } from './call-refused.js';
import { createSingleFlight } from './single-flight.js';
import { createWeatherCache, entryKey, lockKeyOf } from './weather-cache.js';

const redisClients: Redis[] = [];
afterEach(async () => {
  await Promise.all(redisClients.splice(0).map((r) => r.quit().catch(() => undefined)));
});

function flight(options: { redis?: Redis; now?: () => number } = {}) {
  const m = testMetrics();
  const cache = createWeatherCache({
    redis: options.redis,
    staleMaxMs: 60_000,
    metrics: m.metrics,
    logger: silentLogger,
  });
  const f = createSingleFlight({
    cache,
    redis: options.redis,
    apiTimeoutMs: 1000,
    metrics: m.metrics,
    now: options.now ?? Date.now,
  });
  return { flight: f, cache, metricValue: m.value };
}

/** A load that answers after `ms`, counting its calls. */
function slowLoad(ms: number, fail = false) {
  const load = async () => {
    load.calls++;
    await new Promise((r) => setTimeout(r, ms));
    if (fail) throw new Error('API down');
    return { ...NEUTRAL_WEATHER, temperature_c: load.calls };
  };
  load.calls = 0;
  return load;
}

const key = entryKey('current', '48.900:2.400');
const TTL = 60_000;

describe('single flight in process', () => {
  it('shares one load among concurrent fetches of a key, stores it, and loads again once it settled', async () => {
    const { flight: f, cache } = flight();
    const load = slowLoad(30);
    const [a, b] = await Promise.all([f.fetch(key, TTL, load), f.fetch(key, TTL, load)]);
    expect(load.calls).toBe(1);
    expect(a).toEqual({ entry: b?.entry, fromCache: false });
    expect(cache.l1Get(key)).toEqual(a.entry);
    await f.fetch(key, TTL, load);
    expect(load.calls).toBe(2);
  });

  it('loads each key on its own', async () => {
    const { flight: f } = flight();
    const load = slowLoad(10);
    await Promise.all([f.fetch(key, TTL, load), f.fetch(entryKey('forecast', '48.900:2.400'), TTL, load)]);
    expect(load.calls).toBe(2);
  });

  it("fails every waiter with the load's error, then tries again", async () => {
    const { flight: f } = flight();
    const failing = slowLoad(10, true);
    const results = await Promise.allSettled([f.fetch(key, TTL, failing), f.fetch(key, TTL, failing)]);
    expect(results.map((r) => r.status === 'rejected' && (r.reason as Error).message)).toEqual([
      'API down',
      'API down',
    ]);
    expect(failing.calls).toBe(1);
    const load = slowLoad(1);
    expect((await f.fetch(key, TTL, load)).fromCache).toBe(false);
  });

  it('stamps an entry with the time its load started', async () => {
    let clock = 1_000;
    const { flight: f } = flight({ now: () => clock });
    const { entry } = await f.fetch(key, TTL, async () => {
      clock = 2_000;
      return NEUTRAL_WEATHER;
    });
    expect(entry.fetchedAt).toBe(1_000);
  });

  it('loads without the lock when Redis fails, and counts it', async () => {
    const down = () => Promise.reject(new Error('down'));
    const failing = { get: down, set: down } as unknown as Redis;
    const { flight: f, metricValue } = flight({ redis: failing });
    expect((await f.fetch(key, TTL, slowLoad(1))).fromCache).toBe(false);
    expect(await metricValue('delay.weather.cache_errors', { operation: 'lock' })).toBe(1);
  });
});

const hasRedis = await redisAvailable();

describe.skipIf(!hasRedis)('single flight across replicas (the real Redis)', () => {
  async function replicas() {
    const shared = await isolatedRedis();
    const second = shared.duplicate();
    redisClients.push(shared, second);
    await redisReady(second, 2000);
    return [flight({ redis: shared }), flight({ redis: second })] as const;
  }

  it('one replica loads while the other reads what it wrote, and releases the lock', async () => {
    const [a, b] = await replicas();
    const load = slowLoad(100);
    const first = a.flight.fetch(key, TTL, load);
    await new Promise((r) => setTimeout(r, 20));
    const second = await b.flight.fetch(key, TTL, load);
    expect(load.calls).toBe(1);
    expect(second.fromCache).toBe(true);
    expect(second.entry).toEqual((await first).entry);
    expect(b.cache.l1Get(key)).toEqual(second.entry);
    expect(await redisClients[0]?.exists(lockKeyOf(key))).toBe(0);
  });

  it('the lock holder takes a fresh entry another replica wrote instead of loading', async () => {
    const [a, b] = await replicas();
    const written = await a.flight.fetch(key, TTL, slowLoad(1));
    const load = slowLoad(1);
    expect(await b.flight.fetch(key, TTL, load)).toEqual({ entry: written.entry, fromCache: true });
    expect(load.calls).toBe(0);
  });

  it('a waiter gives up with lock_wait as soon as the holder released the lock without an entry', async () => {
    const [a, b] = await replicas();
    const holder = a.flight.fetch(key, TTL, slowLoad(50, true)).catch((err: Error) => err.message);
    await new Promise((r) => setTimeout(r, 10));
    const started = performance.now();
    const waited = await b.flight.fetch(key, TTL, slowLoad(1)).catch((err: unknown) => err);
    expect(waited).toBeInstanceOf(CallRefused);
    expect((waited as CallRefused).reason).toBe('lock_wait');
    expect(performance.now() - started).toBeLessThan(1000);
    expect(await holder).toBe('API down');
  });
});
