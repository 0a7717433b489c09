import { TIMED_OUT, withTimeout } from '../async/with-timeout.js';
import type { Booking } from '../domain/booking.js';
import {
  NEUTRAL_WEATHER,
  type WeatherConditions,
  type WeatherLookup,
  type WeatherProvider,
} from '../domain/weather.js';
import type { ServiceMetrics } from '../telemetry/service-metrics.js';
import type { ApiGate } from './api-gate.js';
import { CallRefused } from './call-refused.js';
import { type ForecastSlots, nearestSlot, type WeatherEndpoint } from './openweathermap.js';
import type { SingleFlight } from './single-flight.js';
import { entryKey, type WeatherCache, type WeatherEntry } from './weather-cache.js';

type Outcome = 'l1_hit' | 'l2_hit' | 'miss' | 'stale' | 'default';

const FORECAST_HORIZON_MS = 5 * 86_400_000;

export interface WeatherLookupOptions {
  cache: Pick<WeatherCache, 'l1Get' | 'l1Set' | 'l2Get'>;
  flight: SingleFlight;
  gate: Pick<ApiGate, 'call'>;
  gridDeg: number;
  currentTtlMs: number;
  forecastTtlMs: number;
  staleMaxMs: number;
  lookupTimeoutMs: number;
  metrics: Pick<ServiceMetrics, 'weatherLookups' | 'weatherCallsRefused'>;
  now: () => number;
}

/**
 * A booking's weather by its pickup's grid cell: current weather within the hour, the forecast up to five
 * days ahead, from L1, L2, or one call through single flight; within lookupTimeoutMs, else the freshest
 * entry up to staleMaxMs old, else neutral defaults.
 */
export function createWeatherLookup(o: WeatherLookupOptions): WeatherProvider {
  const cellOf = (lat: number, lon: number) => {
    const round = (x: number) => Math.round(x / o.gridDeg) * o.gridDeg;
    return { lat: round(lat), lon: round(lon), key: `${round(lat).toFixed(3)}:${round(lon).toFixed(3)}` };
  };

  function answer(
    outcome: Outcome,
    endpoint: WeatherEndpoint,
    entry: WeatherEntry | undefined,
    atMs: number,
  ): WeatherLookup {
    const conditions = entry
      ? endpoint === 'current'
        ? (entry.data as WeatherConditions)
        : nearestSlot(entry.data as ForecastSlots, atMs / 1000)
      : null;
    if (!conditions) {
      o.metrics.weatherLookups.add(1, { outcome: 'default' });
      return { source: 'default', conditions: NEUTRAL_WEATHER };
    }
    o.metrics.weatherLookups.add(1, { outcome });
    return { source: outcome === 'miss' ? 'api' : 'cache', conditions };
  }

  async function resolve(
    key: string,
    endpoint: WeatherEndpoint,
    cell: ReturnType<typeof cellOf>,
    ttl: number,
    atMs: number,
  ) {
    const l2 = await o.cache.l2Get(key);
    if (l2 && o.now() - l2.fetchedAt < ttl) {
      o.cache.l1Set(key, l2);
      return answer('l2_hit', endpoint, l2, atMs);
    }
    try {
      const { entry, fromCache } = await o.flight.fetch(key, ttl, () =>
        o.gate.call(endpoint, cell.lat, cell.lon),
      );
      return answer(fromCache ? 'l2_hit' : 'miss', endpoint, entry, atMs);
    } catch (err) {
      if (err instanceof CallRefused) o.metrics.weatherCallsRefused.add(1, { reason: err.reason });
      return staleOrDefault(key, endpoint, atMs, l2);
    }
  }

  function staleOrDefault(key: string, endpoint: WeatherEndpoint, atMs: number, l2?: WeatherEntry) {
    const candidates = [o.cache.l1Get(key), l2].filter(
      (e): e is WeatherEntry => !!e && o.now() - e.fetchedAt < o.staleMaxMs,
    );
    const freshest = candidates.sort((a, b) => b.fetchedAt - a.fetchedAt)[0];
    return freshest
      ? answer('stale', endpoint, freshest, atMs)
      : answer('default', endpoint, undefined, atMs);
  }

  return {
    async lookup(booking: Booking): Promise<WeatherLookup> {
      const atMs = Date.parse(booking.scheduled_at);
      const t = o.now();
      if (atMs - t > FORECAST_HORIZON_MS) return answer('default', 'forecast', undefined, atMs);
      const endpoint: WeatherEndpoint = atMs - t <= 3_600_000 ? 'current' : 'forecast';
      const ttl = endpoint === 'current' ? o.currentTtlMs : o.forecastTtlMs;
      const cell = cellOf(booking.pickup.lat, booking.pickup.lon);
      const key = entryKey(endpoint, cell.key);
      const cached = o.cache.l1Get(key);
      if (cached && t - cached.fetchedAt < ttl) return answer('l1_hit', endpoint, cached, atMs);

      const result = await withTimeout(resolve(key, endpoint, cell, ttl, atMs), o.lookupTimeoutMs);
      if (result !== TIMED_OUT) return result;
      o.metrics.weatherCallsRefused.add(1, { reason: 'timeout' });
      return staleOrDefault(key, endpoint, atMs);
    },
  };
}
