import { describe, expect, it } from 'vitest';
import { NEUTRAL_WEATHER } from '../domain/weather.js';
import { booking, silentLogger, testMetrics } from '../test-support/harness.js';
import { CallRefused } from './call-refused.js';
import type { WeatherData, WeatherEndpoint } from './openweathermap.js';
import { createSingleFlight } from './single-flight.js';
import { createWeatherCache } from './weather-cache.js';
import { createWeatherLookup } from './weather-lookup.js';

type Call = (endpoint: WeatherEndpoint, lat: number, lon: number) => Promise<WeatherData>;

/** A lookup whose API calls go to `call` (recorded), with an in-process cache and a clock the test moves. */
function lookup(call: Call) {
  const m = testMetrics();
  let clock = Date.parse('2026-03-01T12:00:00Z');
  const now = () => clock;
  const calls: [WeatherEndpoint, number, number][] = [];
  const cache = createWeatherCache({ staleMaxMs: 3_600_000, metrics: m.metrics, logger: silentLogger });
  const weather = createWeatherLookup({
    cache,
    flight: createSingleFlight({ cache, apiTimeoutMs: 1000, metrics: m.metrics, now }),
    gate: {
      call: (endpoint, lat, lon) => {
        calls.push([endpoint, lat, lon]);
        return call(endpoint, lat, lon);
      },
    },
    gridDeg: 0.5,
    currentTtlMs: 600_000,
    forecastTtlMs: 1_800_000,
    staleMaxMs: 3_600_000,
    lookupTimeoutMs: 100,
    metrics: m.metrics,
    now,
  });
  const at = (lat: number, lon: number, minutesAhead = 5) =>
    booking({
      scheduled_at: new Date(clock + minutesAhead * 60_000).toISOString(),
      pickup: { lat, lon },
    }) as never;
  return {
    weather,
    calls,
    at,
    metricValue: m.value,
    advance: (ms: number) => {
      clock += ms;
    },
    now,
  };
}

const rainy = { ...NEUTRAL_WEATHER, precipitation_mm_h: 3 };

describe('weather lookup', () => {
  it('asks once per grid cell, with the cell centre, then answers from L1', async () => {
    const l = lookup(async () => rainy);
    expect(await l.weather.lookup(l.at(48.8, 2.3))).toEqual({ source: 'api', conditions: rainy });
    expect(await l.weather.lookup(l.at(49.1, 2.4))).toEqual({ source: 'cache', conditions: rainy });
    expect(l.calls).toEqual([['current', 49, 2.5]]);
    expect(await l.metricValue('delay.weather.lookups', { outcome: 'miss' })).toBe(1);
    expect(await l.metricValue('delay.weather.lookups', { outcome: 'l1_hit' })).toBe(1);
  });

  it('takes the forecast slot nearest the booking beyond the hour, and defaults past five days', async () => {
    const l = lookup(async () => ({
      slots: [
        { at: (l.now() + 2 * 3_600_000) / 1000, conditions: NEUTRAL_WEATHER },
        { at: (l.now() + 5 * 3_600_000) / 1000, conditions: rainy },
      ],
    }));
    expect(await l.weather.lookup(l.at(48.8, 2.3, 4.5 * 60))).toEqual({ source: 'api', conditions: rainy });
    expect(await l.weather.lookup(l.at(48.8, 2.3, 6 * 24 * 60))).toEqual({
      source: 'default',
      conditions: NEUTRAL_WEATHER,
    });
    expect(l.calls.map(([endpoint]) => endpoint)).toEqual(['forecast']);
  });

  it('answers a stale entry when the call is refused, counting why, and defaults past staleMaxMs', async () => {
    let refuse = false;
    const l = lookup(async () => {
      if (refuse) throw new CallRefused('budget');
      return rainy;
    });
    await l.weather.lookup(l.at(48.8, 2.3));
    refuse = true;
    l.advance(11 * 60_000);
    expect(await l.weather.lookup(l.at(48.8, 2.3))).toEqual({ source: 'cache', conditions: rainy });
    expect(await l.metricValue('delay.weather.lookups', { outcome: 'stale' })).toBe(1);
    expect(await l.metricValue('delay.weather.calls_refused', { reason: 'budget' })).toBe(1);
    l.advance(3_600_000);
    expect((await l.weather.lookup(l.at(48.8, 2.3))).source).toBe('default');
  });

  it('counts a failed call as no refusal', async () => {
    const l = lookup(async () => {
      throw new Error('500');
    });
    expect((await l.weather.lookup(l.at(48.8, 2.3))).source).toBe('default');
    expect(await l.metricValue('delay.weather.calls_refused')).toBe(0);
  });

  it('answers within lookupTimeoutMs when the call hangs, counting the timeout', async () => {
    const l = lookup(() => new Promise(() => {}));
    const started = performance.now();
    expect((await l.weather.lookup(l.at(48.8, 2.3))).source).toBe('default');
    expect(performance.now() - started).toBeLessThan(400);
    expect(await l.metricValue('delay.weather.calls_refused', { reason: 'timeout' })).toBe(1);
  });
});
