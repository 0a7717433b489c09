import type { Redis } from 'ioredis';
import { LRUCache } from 'lru-cache';
import type { Logger } from 'pino';
import type { ServiceMetrics } from '../telemetry/service-metrics.js';
import type { WeatherData, WeatherEndpoint } from './openweathermap.js';

export interface WeatherEntry {
  fetchedAt: number;
  data: WeatherData;
}

export interface WeatherCacheOptions {
  /** The shared level (L2); without it the cache is this process's alone. */
  redis?: Redis;
  /** How long Redis keeps an entry: as long as it may still be served stale. */
  staleMaxMs: number;
  metrics: Pick<ServiceMetrics, 'weatherCacheErrors'>;
  logger: Logger;
}

/** The in-process LRU (L1) and Redis (L2). Redis failing is counted and read as a miss, never thrown. */
export interface WeatherCache {
  l1Get(key: string): WeatherEntry | undefined;
  l1Set(key: string, entry: WeatherEntry): void;
  l2Get(key: string): Promise<WeatherEntry | undefined>;
  /** Writes both levels. */
  store(key: string, entry: WeatherEntry): Promise<WeatherEntry>;
  /** Entries per level; null for L2 without Redis. */
  sizes(): Promise<{ l1: number; l2: number | null }>;
}

const ENTRY_PREFIX = 'weather:v1:';
const LOCK_SUFFIX = ':lock';

export const entryKey = (endpoint: WeatherEndpoint, cell: string) => `${ENTRY_PREFIX}${endpoint}:${cell}`;

/** A cell's cross-replica lock sits beside its entry in Redis; counting entries skips it. */
export const lockKeyOf = (key: string) => `${key}${LOCK_SUFFIX}`;

export function createWeatherCache(o: WeatherCacheOptions): WeatherCache {
  const l1 = new LRUCache<string, WeatherEntry>({ max: 50_000 });

  async function l2Set(key: string, entry: WeatherEntry) {
    if (!o.redis) return;
    try {
      await o.redis.set(key, JSON.stringify(entry), 'PX', o.staleMaxMs);
    } catch (err) {
      o.metrics.weatherCacheErrors.add(1, { operation: 'set' });
      o.logger.debug({ err: (err as Error).message }, 'weather L2 write failed');
    }
  }

  return {
    l1Get: (key) => l1.get(key),
    l1Set: (key, entry) => {
      l1.set(key, entry);
    },

    async l2Get(key) {
      if (!o.redis) return undefined;
      try {
        const text = await o.redis.get(key);
        return text ? (JSON.parse(text) as WeatherEntry) : undefined;
      } catch (err) {
        o.metrics.weatherCacheErrors.add(1, { operation: 'get' });
        o.logger.debug({ err: (err as Error).message }, 'weather L2 read failed');
        return undefined;
      }
    },

    async store(key, entry) {
      l1.set(key, entry);
      await l2Set(key, entry);
      return entry;
    },

    async sizes() {
      const l2 = o.redis
        ? (await o.redis.keys(`${ENTRY_PREFIX}*`).catch(() => [])).filter((k) => !k.endsWith(LOCK_SUFFIX))
            .length
        : null;
      return { l1: l1.size, l2 };
    },
  };
}
