import type { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { redisReady } from '../cache/redis.js';
import { startFakeOpenWeatherMap } from '../test-support/fake-openweathermap.js';
import { booking, postJson, silentLogger, testApp, testMetrics } from '../test-support/harness.js';
import { isolatedRedis, redisAvailable } from '../test-support/redis.js';
import { openWeatherMapClient } from './openweathermap.js';
import { createWeatherService, type WeatherServiceOptions } from './weather-service.js';

type Fake = Awaited<ReturnType<typeof startFakeOpenWeatherMap>>;
let fake: Fake;
const redisClients: Redis[] = [];
beforeAll(async () => {
  fake = await startFakeOpenWeatherMap();
});
afterAll(async () => {
  await fake.close();
});
afterEach(async () => {
  fake.calls.length = 0;
  fake.setMode({ kind: 'ok' });
  await Promise.all(redisClients.splice(0).map((r) => r.quit().catch(() => undefined)));
});

function service(overrides: Partial<WeatherServiceOptions> = {}) {
  const m = testMetrics();
  const weather = createWeatherService({
    client: openWeatherMapClient({ baseUrl: fake.url, apiKey: 'test-key' }),
    metrics: m.metrics,
    logger: silentLogger,
    gridDeg: 0.1,
    currentTtlMs: 600_000,
    forecastTtlMs: 3_600_000,
    staleMaxMs: 6 * 3_600_000,
    dailyBudget: 1000,
    lookupTimeoutMs: 300,
    apiTimeoutMs: 1000,
    authRetryMs: 3_600_000,
    ...overrides,
  });
  return { weather, metricValue: m.value };
}

const inMinutes = (minutes: number) =>
  new Date(Date.now() + minutes * 60_000).toISOString().replace('Z', '+00:00');
const at = (lat: number, lon: number, minutesAhead = 5) =>
  booking({
    booking_id: `w-${lat}-${lon}`,
    scheduled_at: inMinutes(minutesAhead),
    pickup: { lat, lon },
  }) as never;

describe('weather lookups (fake OpenWeatherMap, no Redis)', () => {
  it('calls the current endpoint once per cell, then answers from cache', async () => {
    fake.setMode({ kind: 'ok', rainMmH: 2.3 });
    const { weather, metricValue } = service();
    expect(await weather.lookup(at(48.86, 2.36))).toMatchObject({
      source: 'api',
      conditions: { precipitation_mm_h: 2.3 },
    });
    expect(await weather.lookup(at(48.87, 2.37))).toMatchObject({ source: 'cache' }); // same 0.1° cell
    expect(await weather.lookup(at(48.95, 2.35))).toMatchObject({ source: 'api' });
    expect(fake.calls.map((c) => c.path)).toEqual(['/data/2.5/weather', '/data/2.5/weather']);
    expect(fake.calls[0]).toMatchObject({ lat: 48.9, lon: 2.4, appid: 'test-key' });
    expect(await metricValue('delay.weather.lookups', { outcome: 'l1_hit' })).toBe(1);
    expect(await metricValue('delay.weather.api_calls', { endpoint: 'current', status: '200' })).toBe(2);
  });

  it('uses the forecast for later bookings, and defaults beyond its five days', async () => {
    const { weather } = service();
    const later = await weather.lookup(at(48.85, 2.35, 26 * 60));
    expect(later.source).toBe('api');
    expect(fake.calls.map((c) => c.path)).toEqual(['/data/2.5/forecast']);
    expect(await weather.lookup(at(48.85, 2.35, 27 * 60))).toMatchObject({ source: 'cache' });
    expect(await weather.lookup(at(48.85, 2.35, 6 * 24 * 60))).toMatchObject({ source: 'default' });
    expect(fake.calls).toHaveLength(1);
  });

  it('serves stale entries when the API fails after they expire, then defaults past the stale limit', async () => {
    let clock = Date.now();
    const { weather, metricValue } = service({ now: () => clock });
    const b = at(48.85, 2.35);
    expect((await weather.lookup(b)).source).toBe('api');
    fake.setMode({ kind: 'status', status: 500 });
    clock += 11 * 60_000;
    expect(await weather.lookup(b)).toMatchObject({ source: 'cache', conditions: { temperature_c: 7.4 } });
    expect(await metricValue('delay.weather.lookups', { outcome: 'stale' })).toBe(1);
    clock += 7 * 3_600_000;
    expect(await weather.lookup(b)).toMatchObject({ source: 'default' });
  });

  it('stops calling after a 401, and counts it', async () => {
    fake.setMode({ kind: 'status', status: 401 });
    const { weather, metricValue } = service();
    for (let i = 0; i < 5; i++) expect((await weather.lookup(at(48 + i, 2))).source).toBe('default');
    expect(fake.calls).toHaveLength(1);
    expect(await metricValue('delay.weather.api_calls', { status: '401' })).toBe(1);
    expect(await metricValue('delay.weather.calls_refused', { reason: 'auth' })).toBe(4);
  });

  it('backs off after a 429 for its Retry-After', async () => {
    fake.setMode({ kind: 'status', status: 429, retryAfterS: 120 });
    let clock = Date.now();
    const { weather } = service({ now: () => clock });
    await weather.lookup(at(48, 2));
    await weather.lookup(at(49, 2));
    expect(fake.calls).toHaveLength(1);
    fake.setMode({ kind: 'ok' });
    clock += 121_000;
    expect((await weather.lookup(at(50, 2))).source).toBe('api');
  });

  it.each([
    ['a 404 with a string cod', { kind: 'status', status: 404, cod: '404' } as const, '404'],
    ['a 500', { kind: 'status', status: 500 } as const, '500'],
    ['malformed JSON', { kind: 'malformed' } as const, 'bad_response'],
  ])('answers defaults on %s, and counts the call', async (_name, mode, status) => {
    fake.setMode(mode);
    const { weather, metricValue } = service();
    expect(await weather.lookup(at(48.85, 2.35))).toMatchObject({ source: 'default' });
    expect(await metricValue('delay.weather.api_calls', { status })).toBe(1);
  });

  it('never holds a lookup past its timeout when the API is slow', async () => {
    fake.setMode({ kind: 'slow', delayMs: 5000 });
    const { weather, metricValue } = service({ apiTimeoutMs: 6000 });
    const started = performance.now();
    expect((await weather.lookup(at(48.85, 2.35))).source).toBe('default');
    expect(performance.now() - started).toBeLessThan(600);
    expect(await metricValue('delay.weather.calls_refused', { reason: 'timeout' })).toBe(1);
  });

  it('opens the circuit after repeated failures and stops calling', async () => {
    fake.setMode({ kind: 'status', status: 500 });
    const { weather, metricValue } = service();
    for (let i = 0; i < 12; i++) await weather.lookup(at(40 + i, 2));
    expect(fake.calls.length).toBeLessThan(12);
    expect(await metricValue('delay.weather.calls_refused', { reason: 'circuit_open' })).toBeGreaterThan(0);
  });

  it('reports budget, caches, circuit and key in its stats; checkKey tries a rejected key again', async () => {
    fake.setMode({ kind: 'status', status: 401 });
    const { weather } = service({ dailyBudget: 10 });
    await weather.lookup(at(48.85, 2.35));
    expect(await weather.stats()).toEqual({
      day: new Date().toISOString().slice(0, 10),
      budget: 10,
      budget_used: 1,
      l1_entries: 0,
      l2_entries: null,
      circuit: 'closed',
      key_rejected: true,
    });
    fake.setMode({ kind: 'ok' });
    expect(await weather.checkKey(48.85, 2.35)).toMatchObject({ temperature_c: 7.4 });
    expect(await weather.lookup(at(48.85, 2.35))).toMatchObject({ source: 'api' });
    expect(await weather.stats()).toMatchObject({ budget_used: 3, l1_entries: 1, key_rejected: false });
  });

  it('keeps to its daily budget without Redis too', async () => {
    const { weather } = service({ dailyBudget: 3 });
    for (let i = 0; i < 6; i++) await weather.lookup(at(40 + i, 2));
    expect(fake.calls).toHaveLength(3);
  });
});

const hasRedis = await redisAvailable();

describe.skipIf(!hasRedis)('weather shared through the real Redis', () => {
  const cells = Array.from({ length: 20 }, (_, i) => ({ lat: 48 + i * 0.2, lon: 2 + (i % 4) * 0.3 }));
  const concurrentPredictions = (apps: Awaited<ReturnType<typeof testApp>>[], count: number) =>
    Promise.all(
      Array.from({ length: count }, (_, i) => {
        const cell = cells[i % cells.length] as { lat: number; lon: number };
        // Each cell is asked of both instances: i % 20 picks the cell, i / 20 alternates the instance.
        const instance = apps[Math.floor(i / cells.length) % apps.length] as (typeof apps)[number];
        return postJson(instance.app, '/v1/predictions', {
          ...booking({ booking_id: `r-${i}`, scheduled_at: inMinutes(10) }),
          pickup: cell,
        });
      }),
    );

  async function twoInstances(overrides: Partial<WeatherServiceOptions>) {
    const shared = await isolatedRedis();
    redisClients.push(shared);
    const second = shared.duplicate();
    redisClients.push(second);
    await redisReady(second, 2000);
    return Promise.all(
      [shared, second].map((redis) =>
        testApp({ deps: { weather: service({ redis, ...overrides }).weather } }),
      ),
    );
  }

  // A generous lookup timeout: these two tests count API calls, and a loaded CI machine must not turn
  // slow lookups into defaults. The timeout itself is tested above and in the last test.
  it('two instances, 200 concurrent predictions over 20 cells: one API call per cell', async () => {
    const apps = await twoInstances({ lookupTimeoutMs: 3000 });
    try {
      const responses = await concurrentPredictions(apps, 200);
      expect(responses.every((r) => r.status === 200)).toBe(true);
      const bodies = await Promise.all(responses.map((r) => r.json()));
      const sources = bodies.map((b) => b.weather.source);
      expect(new Set(sources), JSON.stringify(sources)).toEqual(new Set(['api', 'cache']));
      const perCell = new Map<string, number>();
      for (const c of fake.calls)
        perCell.set(`${c.lat}:${c.lon}`, (perCell.get(`${c.lat}:${c.lon}`) ?? 0) + 1);
      expect(perCell.size).toBe(20);
      expect(Math.max(...perCell.values()), JSON.stringify([...perCell])).toBe(1);
    } finally {
      await Promise.all(apps.map((a) => a.close()));
    }
  });

  it('two instances share a budget of 5: at most 5 calls in all', async () => {
    const apps = await twoInstances({ dailyBudget: 5, lookupTimeoutMs: 3000 });
    try {
      const responses = await concurrentPredictions(apps, 200);
      expect(responses.every((r) => r.status === 200)).toBe(true);
      expect(fake.calls.length).toBeLessThanOrEqual(5);
      expect(fake.calls.length).toBeGreaterThan(0);
    } finally {
      await Promise.all(apps.map((a) => a.close()));
    }
  });

  it('API slow or down under load: every prediction answers in time, from stale entries or defaults', async () => {
    let clock = Date.now();
    const apps = await twoInstances({ now: () => clock });
    try {
      await concurrentPredictions(apps, 40); // warm 20 cells
      clock += 11 * 60_000; // every entry expired, none past the stale limit
      for (const mode of [
        { kind: 'slow', delayMs: 5000 } as const,
        { kind: 'status', status: 500 } as const,
      ]) {
        fake.setMode(mode);
        const started = performance.now();
        const responses = await concurrentPredictions(apps, 100);
        const elapsed = performance.now() - started;
        const bodies = await Promise.all(responses.map((r) => r.json()));
        expect(responses.every((r) => r.status === 200)).toBe(true);
        expect(bodies.every((b) => b.weather.source === 'cache' || b.weather.source === 'default')).toBe(
          true,
        );
        expect(elapsed).toBeLessThan(3000);
      }
    } finally {
      await Promise.all(apps.map((a) => a.close()));
    }
  });
});
