import type { Redis } from 'ioredis';
import { LRUCache } from 'lru-cache';
import CircuitBreaker from 'opossum';
import type { Logger } from 'pino';
import type { Booking } from '../predictions/schemas.js';
import type { ServiceMetrics } from '../telemetry/service-metrics.js';
import {
  type ForecastSlots,
  nearestSlot,
  type OpenWeatherMapClient,
  WeatherApiError,
} from './openweathermap.js';
import {
  NEUTRAL_WEATHER,
  type WeatherConditions,
  type WeatherLookup,
  type WeatherProvider,
} from './weather.js';

/** The tunables, as the configuration module reads them (README: WEATHER_*). */
export interface WeatherSettings {
  gridDeg: number;
  currentTtlMs: number;
  forecastTtlMs: number;
  staleMaxMs: number;
  dailyBudget: number;
  /** What a prediction waits for weather at most. */
  lookupTimeoutMs: number;
  /** What one API call may take (it goes on filling the cache after a lookup gave up on it). */
  apiTimeoutMs: number;
  /** After a 401, how long before the key is tried again. */
  authRetryMs: number;
}

export interface WeatherServiceOptions extends WeatherSettings {
  client: OpenWeatherMapClient;
  /** Shared cache, lock and budget across replicas; without it each process has its own. */
  redis?: Redis;
  metrics: ServiceMetrics;
  logger: Logger;
  now?: () => number;
}

type Kind = 'current' | 'forecast';
interface Entry {
  fetchedAt: number;
  data: WeatherConditions | ForecastSlots;
}
interface Fetched {
  entry: Entry;
  fromCache: boolean;
}
type Outcome = 'l1_hit' | 'l2_hit' | 'miss' | 'stale' | 'default';

const FORECAST_HORIZON_MS = 5 * 86_400_000;
const LOCK_POLL_MS = 20;

/** Calls refused before reaching the API, with why: the budget, a rejected key, a 429, an open circuit. */
class CallRefused extends Error {
  constructor(readonly reason: 'budget' | 'auth' | 'rate_limited' | 'circuit_open' | 'lock_wait') {
    super(`weather call refused: ${reason}`);
  }
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
  const log = o.logger.child({ component: 'weather' });
  const l1 = new LRUCache<string, Entry>({ max: 50_000 });
  const inFlight = new Map<string, Promise<Fetched>>();
  let authBlockedUntil = 0;
  let rateLimitedUntil = 0;
  let localBudget = { day: '', used: 0 };
  let budgetRemaining = o.dailyBudget;

  o.metrics.weatherBudgetRemaining.addCallback((r) => r.observe(budgetRemaining));

  const breaker = new CircuitBreaker(
    async (kind: Kind, lat: number, lon: number) => {
      const started = performance.now();
      try {
        const data = await o.client[kind](lat, lon, AbortSignal.timeout(o.apiTimeoutMs));
        o.metrics.weatherApiCalls.add(1, { endpoint: kind, status: '200' });
        return data;
      } catch (err) {
        const status = err instanceof WeatherApiError ? (err.status >= 400 ? err.status : err.kind) : 'error';
        o.metrics.weatherApiCalls.add(1, { endpoint: kind, status: String(status) });
        throw err;
      } finally {
        o.metrics.weatherApiDuration.record((performance.now() - started) / 1000, { endpoint: kind });
      }
    },
    {
      timeout: false, // the client's AbortSignal bounds each call
      errorThresholdPercentage: 50,
      volumeThreshold: 5,
      resetTimeout: 30_000,
      // A rejected key or a rate limit is handled by its own pause, not by opening the circuit.
      errorFilter: (err: unknown) =>
        err instanceof WeatherApiError && (err.kind === 'auth' || err.kind === 'rate_limited'),
    },
  );
  breaker.on('open', () => log.warn('weather API circuit opened: calls stop until it half-opens'));
  breaker.on('close', () => log.info('weather API circuit closed'));

  const cellOf = (lat: number, lon: number) => {
    const round = (x: number) => Math.round(x / o.gridDeg) * o.gridDeg;
    return { lat: round(lat), lon: round(lon), key: `${round(lat).toFixed(3)}:${round(lon).toFixed(3)}` };
  };

  async function l2Get(key: string): Promise<Entry | undefined> {
    if (!o.redis) return undefined;
    try {
      const text = await o.redis.get(key);
      return text ? (JSON.parse(text) as Entry) : undefined;
    } catch (err) {
      o.metrics.weatherCacheErrors.add(1, { operation: 'get' });
      log.debug({ err: (err as Error).message }, 'weather L2 read failed');
      return undefined;
    }
  }

  async function l2Set(key: string, entry: Entry) {
    if (!o.redis) return;
    try {
      await o.redis.set(key, JSON.stringify(entry), 'PX', o.staleMaxMs);
    } catch (err) {
      o.metrics.weatherCacheErrors.add(1, { operation: 'set' });
      log.debug({ err: (err as Error).message }, 'weather L2 write failed');
    }
  }

  /** Takes one call from the day's budget (UTC day), shared through Redis when there is one. */
  async function spendBudget() {
    const day = new Date(now()).toISOString().slice(0, 10);
    let used: number;
    if (o.redis) {
      try {
        const key = `weather:budget:${day}`;
        const [[, count]] = (await o.redis
          .multi()
          .incr(key)
          .expire(key, 2 * 86_400)
          .exec()) as [[unknown, number]];
        used = count;
      } catch {
        o.metrics.weatherCacheErrors.add(1, { operation: 'budget' });
        if (localBudget.day !== day) localBudget = { day, used: 0 };
        used = ++localBudget.used;
      }
    } else {
      if (localBudget.day !== day) localBudget = { day, used: 0 };
      used = ++localBudget.used;
    }
    budgetRemaining = Math.max(0, o.dailyBudget - Math.min(used, o.dailyBudget));
    if (used > o.dailyBudget) throw new CallRefused('budget');
  }

  async function call(kind: Kind, lat: number, lon: number): Promise<WeatherConditions | ForecastSlots> {
    const t = now();
    if (t < authBlockedUntil) throw new CallRefused('auth');
    if (t < rateLimitedUntil) throw new CallRefused('rate_limited');
    if (breaker.opened) throw new CallRefused('circuit_open');
    await spendBudget();
    try {
      return await breaker.fire(kind, lat, lon);
    } catch (err) {
      if (err instanceof WeatherApiError && err.kind === 'auth') {
        // Calls in flight together all meet the same 401 or 429: the first one logs it, the others only count it.
        const alreadyBlocked = now() < authBlockedUntil;
        authBlockedUntil = now() + o.authRetryMs;
        if (!alreadyBlocked)
          log.error(
            { status: err.status },
            'weather API rejected the key: no calls until it is retried or replaced',
          );
      } else if (err instanceof WeatherApiError && err.kind === 'rate_limited') {
        const alreadyBackingOff = now() < rateLimitedUntil;
        rateLimitedUntil = now() + (err.retryAfterS ?? 60) * 1000;
        if (!alreadyBackingOff)
          log.warn({ retry_after_s: err.retryAfterS ?? 60 }, 'weather API rate limit: backing off');
      }
      throw err;
    }
  }

  /**
   * One API call per key across replicas: the lock holder calls, the others read what it wrote.
   * `fromCache` tells that the entry came from another replica's call.
   */
  async function fetchShared(
    key: string,
    kind: Kind,
    lat: number,
    lon: number,
    ttl: number,
  ): Promise<Fetched> {
    const fetchNow = async () => ({
      entry: await store(key, { fetchedAt: now(), data: await call(kind, lat, lon) }),
      fromCache: false,
    });
    if (!o.redis) return fetchNow();
    const lockKey = `${key}:lock`;
    let locked = false;
    try {
      locked = (await o.redis.set(lockKey, '1', 'PX', o.apiTimeoutMs + 500, 'NX')) === 'OK';
    } catch {
      o.metrics.weatherCacheErrors.add(1, { operation: 'lock' });
      return fetchNow();
    }
    if (locked) {
      try {
        const fresh = await l2Get(key);
        if (fresh && now() - fresh.fetchedAt < ttl) return { entry: fresh, fromCache: true };
        return await fetchNow();
      } finally {
        await o.redis.del(lockKey).catch(() => undefined);
      }
    }
    // Real time, not the injectable clock: this bounds a wait, it does not judge freshness.
    const deadline = Date.now() + o.apiTimeoutMs + 500;
    const written = async () => {
      const entry = await l2Get(key);
      if (!entry || now() - entry.fetchedAt >= ttl) return null;
      l1.set(key, entry);
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

  async function store(key: string, entry: Entry) {
    l1.set(key, entry);
    await l2Set(key, entry);
    return entry;
  }

  function answer(outcome: Outcome, kind: Kind, entry: Entry | undefined, atMs: number): WeatherLookup {
    const conditions = entry
      ? kind === 'current'
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
    kind: Kind,
    cell: ReturnType<typeof cellOf>,
    ttl: number,
    atMs: number,
  ) {
    const l2 = await l2Get(key);
    if (l2 && now() - l2.fetchedAt < ttl) {
      l1.set(key, l2);
      return answer('l2_hit', kind, l2, atMs);
    }
    let pending = inFlight.get(key);
    if (!pending) {
      pending = fetchShared(key, kind, cell.lat, cell.lon, ttl).finally(() => inFlight.delete(key));
      inFlight.set(key, pending);
    }
    try {
      const { entry, fromCache } = await pending;
      return answer(fromCache ? 'l2_hit' : 'miss', kind, entry, atMs);
    } catch (err) {
      if (err instanceof CallRefused) o.metrics.weatherCallsRefused.add(1, { reason: err.reason });
      return staleOrDefault(key, kind, atMs, l2);
    }
  }

  function staleOrDefault(key: string, kind: Kind, atMs: number, l2?: Entry): WeatherLookup {
    const candidates = [l1.get(key), l2].filter((e): e is Entry => !!e && now() - e.fetchedAt < o.staleMaxMs);
    const freshest = candidates.sort((a, b) => b.fetchedAt - a.fetchedAt)[0];
    return freshest ? answer('stale', kind, freshest, atMs) : answer('default', kind, undefined, atMs);
  }

  return {
    async lookup(booking: Booking): Promise<WeatherLookup> {
      const atMs = Date.parse(booking.scheduled_at);
      const t = now();
      if (atMs - t > FORECAST_HORIZON_MS) return answer('default', 'forecast', undefined, atMs);
      const kind: Kind = atMs - t <= 3_600_000 ? 'current' : 'forecast';
      const ttl = kind === 'current' ? o.currentTtlMs : o.forecastTtlMs;
      const cell = cellOf(booking.pickup.lat, booking.pickup.lon);
      const key = `weather:v1:${kind}:${cell.key}`;
      const cached = l1.get(key);
      if (cached && t - cached.fetchedAt < ttl) return answer('l1_hit', kind, cached, atMs);

      let timer: NodeJS.Timeout | undefined;
      const timeout = new Promise<'timeout'>((r) => {
        timer = setTimeout(() => r('timeout'), o.lookupTimeoutMs);
      });
      const result = await Promise.race([resolve(key, kind, cell, ttl, atMs), timeout]);
      clearTimeout(timer);
      if (result !== 'timeout') return result;
      o.metrics.weatherCallsRefused.add(1, { reason: 'timeout' });
      return staleOrDefault(key, kind, atMs);
    },

    async checkKey(lat, lon) {
      authBlockedUntil = 0;
      return (await call('current', lat, lon)) as WeatherConditions;
    },

    async stats(): Promise<WeatherStats> {
      const day = new Date(now()).toISOString().slice(0, 10);
      const used = o.redis
        ? Number((await o.redis.get(`weather:budget:${day}`).catch(() => null)) ?? 0)
        : localBudget.day === day
          ? localBudget.used
          : 0;
      const l2Keys = o.redis
        ? (await o.redis.keys('weather:v1:*').catch(() => [])).filter((k) => !k.endsWith(':lock')).length
        : null;
      return {
        day,
        budget: o.dailyBudget,
        budget_used: used,
        l1_entries: l1.size,
        l2_entries: l2Keys,
        circuit: breaker.opened ? 'open' : breaker.halfOpen ? 'half_open' : 'closed',
        key_rejected: now() < authBlockedUntil,
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
