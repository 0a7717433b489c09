import CircuitBreaker from 'opossum';
import type { Logger } from 'pino';
import type { ServiceMetrics } from '../telemetry/service-metrics.js';
import type { CallBudget } from './call-budget.js';
import { CallRefused } from './call-refused.js';
import {
  type OpenWeatherMapClient,
  WeatherApiError,
  type WeatherData,
  type WeatherEndpoint,
} from './openweathermap.js';

export interface ApiGateOptions {
  client: OpenWeatherMapClient;
  /** Spent by every call the gate lets through, none by those it refuses. */
  budget: Pick<CallBudget, 'spend'>;
  /** What one API call may take. */
  apiTimeoutMs: number;
  /** After a 401, how long before the key is tried again. */
  authRetryMs: number;
  metrics: Pick<ServiceMetrics, 'weatherApiCalls' | 'weatherApiDuration'>;
  logger: Logger;
  now: () => number;
}

/** The way to the API: refused (CallRefused) after a rejected key, during a 429's backoff, while the circuit is open. */
export interface ApiGate {
  call(endpoint: WeatherEndpoint, lat: number, lon: number): Promise<WeatherData>;
  /** Lifts the pause a 401 started, so the next call tries the key again. */
  retryKey(): void;
  circuit(): 'open' | 'half_open' | 'closed';
  keyRejected(): boolean;
}

export function createApiGate(o: ApiGateOptions): ApiGate {
  let authBlockedUntil = 0;
  let rateLimitedUntil = 0;

  const breaker = new CircuitBreaker(
    async (endpoint: WeatherEndpoint, lat: number, lon: number) => {
      const started = performance.now();
      try {
        const data = await o.client[endpoint](lat, lon, AbortSignal.timeout(o.apiTimeoutMs));
        o.metrics.weatherApiCalls.add(1, { endpoint, status: '200' });
        return data;
      } catch (err) {
        const status = err instanceof WeatherApiError ? (err.status >= 400 ? err.status : err.kind) : 'error';
        o.metrics.weatherApiCalls.add(1, { endpoint, status: String(status) });
        throw err;
      } finally {
        o.metrics.weatherApiDuration.record((performance.now() - started) / 1000, { endpoint });
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
  breaker.on('open', () => o.logger.warn('weather API circuit opened: calls stop until it half-opens'));
  breaker.on('close', () => o.logger.info('weather API circuit closed'));

  return {
    async call(endpoint, lat, lon) {
      const t = o.now();
      if (t < authBlockedUntil) throw new CallRefused('auth');
      if (t < rateLimitedUntil) throw new CallRefused('rate_limited');
      if (breaker.opened) throw new CallRefused('circuit_open');
      await o.budget.spend();
      try {
        return await breaker.fire(endpoint, lat, lon);
      } catch (err) {
        if (err instanceof WeatherApiError && err.kind === 'auth') {
          // Calls in flight together all meet the same 401 or 429: the first one logs it, the others only count it.
          const alreadyBlocked = o.now() < authBlockedUntil;
          authBlockedUntil = o.now() + o.authRetryMs;
          if (!alreadyBlocked)
            o.logger.error(
              { status: err.status },
              'weather API rejected the key: no calls until it is retried or replaced',
            );
        } else if (err instanceof WeatherApiError && err.kind === 'rate_limited') {
          const alreadyBackingOff = o.now() < rateLimitedUntil;
          rateLimitedUntil = o.now() + (err.retryAfterS ?? 60) * 1000;
          if (!alreadyBackingOff)
            o.logger.warn({ retry_after_s: err.retryAfterS ?? 60 }, 'weather API rate limit: backing off');
        }
        throw err;
      }
    },

    retryKey() {
      authBlockedUntil = 0;
    },

    circuit: () => (breaker.opened ? 'open' : breaker.halfOpen ? 'half_open' : 'closed'),
    keyRejected: () => o.now() < authBlockedUntil,
  };
}
