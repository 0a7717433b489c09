import type { Redis } from 'ioredis';
import type { ServiceMetrics } from '../telemetry/service-metrics.js';
import { CallRefused } from './call-refused.js';
import type { WeatherData } from './openweathermap.js';
import { lockKeyOf, type WeatherCache, type WeatherEntry } from './weather-cache.js';

const LOCK_POLL_MS = 20;

export interface Fetched {
  entry: WeatherEntry;
  /** The entry came from another replica's call, not from this `load`. */
  fromCache: boolean;
}

export interface SingleFlightOptions {
  cache: Pick<WeatherCache, 'l1Set' | 'l2Get' | 'store'>;
  /** Holds the lock across replicas; without it single flight is per process. */
  redis?: Redis;
  /** What one API call may take: the lock is held, and waited for, a little longer. */
  apiTimeoutMs: number;
  metrics: Pick<ServiceMetrics, 'weatherCacheErrors'>;
  now: () => number;
}

/**
 * One `load` per key at a time, stored in the cache: concurrent fetches in this process share one, and
 * across replicas a Redis lock lets its holder load while the others read what it wrote. Throws what
 * `load` throws, or CallRefused('lock_wait') when the holder's entry did not come in time.
 */
export interface SingleFlight {
  fetch(key: string, ttl: number, load: () => Promise<WeatherData>): Promise<Fetched>;
}

export function createSingleFlight(o: SingleFlightOptions): SingleFlight {
  const inFlight = new Map<string, Promise<Fetched>>();

  async function fetchShared(key: string, ttl: number, load: () => Promise<WeatherData>): Promise<Fetched> {
    const fetchNow = async () => ({
      entry: await o.cache.store(key, { fetchedAt: o.now(), data: await load() }),
      fromCache: false,
    });
    if (!o.redis) return fetchNow();
    const lockKey = lockKeyOf(key);
    let locked = false;
    try {
      locked = (await o.redis.set(lockKey, '1', 'PX', o.apiTimeoutMs + 500, 'NX')) === 'OK';
    } catch {
      o.metrics.weatherCacheErrors.add(1, { operation: 'lock' });
      return fetchNow();
    }
    if (locked) {
      try {
        const fresh = await o.cache.l2Get(key);
        if (fresh && o.now() - fresh.fetchedAt < ttl) return { entry: fresh, fromCache: true };
        return await fetchNow();
      } finally {
        await o.redis.del(lockKey).catch(() => undefined);
      }
    }
    // Real time, not the injectable clock: this bounds a wait, it does not judge freshness.
    const deadline = Date.now() + o.apiTimeoutMs + 500;
    const written = async () => {
      const entry = await o.cache.l2Get(key);
      if (!entry || o.now() - entry.fetchedAt >= ttl) return null;
      o.cache.l1Set(key, entry);
      return { entry, fromCache: true };
    };
    while (Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, LOCK_POLL_MS));
      const found = await written();
      if (found) return found;
      // The holder writes, then releases: a lock gone since the read above may have left its entry behind.
      if (!(await o.redis.exists(lockKey).catch(() => 0))) {
        const last = await written();
        if (last) return last;
        break;
      }
    }
    throw new CallRefused('lock_wait');
  }

  return {
    fetch(key, ttl, load) {
      let pending = inFlight.get(key);
      if (!pending) {
        pending = fetchShared(key, ttl, load).finally(() => inFlight.delete(key));
        inFlight.set(key, pending);
      }
      return pending;
    },
  };
}
