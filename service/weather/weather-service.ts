import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import type { WeatherSettings } from '../config/config.js';
import type { WeatherConditions, WeatherProvider } from '../domain/weather.js';
import type { ServiceMetrics } from '../telemetry/service-metrics.js';
import { createApiGate } from './api-gate.js';
import { createCallBudget } from './call-budget.js';
import type { OpenWeatherMapClient } from './openweathermap.js';
import { createSingleFlight } from './single-flight.js';
import { createWeatherCache } from './weather-cache.js';
import { createWeatherLookup } from './weather-lookup.js';

export interface WeatherServiceOptions extends WeatherSettings {
  client: OpenWeatherMapClient;
  /** Shared cache, lock and budget across replicas; without it each process has its own. */
  redis?: Redis;
  metrics: ServiceMetrics;
  logger: Logger;
  now?: () => number;
}

/**
 * Weather for a booking, never failing and never slower than lookupTimeoutMs: fresh from the in-process
 * LRU (L1) or Redis (L2), else one API call per cell (single flight in process, a Redis lock across
 * replicas) within a daily budget shared through Redis; when the API cannot answer, the last value up to
 * staleMaxMs old, else neutral defaults.
 */
export interface WeatherService extends WeatherProvider {
  /** One current-weather call for a point, past the caches (it spends budget): does the key work? */
  checkKey(lat: number, lon: number): Promise<WeatherConditions>;
  stats(): Promise<WeatherStats>;
}

export function createWeatherService(o: WeatherServiceOptions): WeatherService {
  const now = o.now ?? Date.now;
  const logger = o.logger.child({ component: 'weather' });
  const { redis, metrics, apiTimeoutMs } = o;
  const cache = createWeatherCache({ redis, staleMaxMs: o.staleMaxMs, metrics, logger });
  const budget = createCallBudget({ redis, dailyBudget: o.dailyBudget, metrics, now });
  const gate = createApiGate({
    client: o.client,
    budget,
    apiTimeoutMs,
    authRetryMs: o.authRetryMs,
    metrics,
    logger,
    now,
  });
  const flight = createSingleFlight({ cache, redis, apiTimeoutMs, metrics, now });
  const { lookup } = createWeatherLookup({
    cache,
    flight,
    gate,
    gridDeg: o.gridDeg,
    currentTtlMs: o.currentTtlMs,
    forecastTtlMs: o.forecastTtlMs,
    staleMaxMs: o.staleMaxMs,
    lookupTimeoutMs: o.lookupTimeoutMs,
    metrics,
    now,
  });

  return {
    lookup,

    async checkKey(lat, lon) {
      gate.retryKey();
      return (await gate.call('current', lat, lon)) as WeatherConditions;
    },

    async stats(): Promise<WeatherStats> {
      const { day, used } = await budget.usage();
      const sizes = await cache.sizes();
      return {
        day,
        budget: o.dailyBudget,
        budget_used: used,
        l1_entries: sizes.l1,
        l2_entries: sizes.l2,
        circuit: gate.circuit(),
        key_rejected: gate.keyRejected(),
      };
    },
  };
}

export interface WeatherStats {
  day: string;
  budget: number;
  budget_used: number;
  l1_entries: number;
  l2_entries: number | null;
  circuit: 'open' | 'half_open' | 'closed';
  key_rejected: boolean;
}
