import { Redis } from 'ioredis';
import type { Logger } from 'pino';

/**
 * A Redis client that fails instead of queueing: callers treat Redis as an optional layer (cache, lock,
 * shared budget). An absent Redis fails at once; a slow one within a second, and weather lookups do not wait
 * for it past their own timeout.
 */
export function connectRedis(url: string, logger: Logger, options: { keyPrefix?: string } = {}): Redis {
  const log = logger.child({ component: 'redis' });
  const redis = new Redis(url, {
    enableOfflineQueue: false,
    maxRetriesPerRequest: 0,
    connectTimeout: 1000,
    commandTimeout: 1000,
    retryStrategy: (attempt) => Math.min(attempt * 200, 5000),
    ...options,
  });
  let healthy = true;
  redis.on('ready', () => {
    if (!healthy) log.info('redis reachable again');
    healthy = true;
  });
  redis.on('error', (err) => {
    if (healthy) log.warn({ err: err.message }, 'redis unreachable; going on without it');
    healthy = false;
  });
  return redis;
}

/** Waits up to `timeoutMs` for the first connection, so a fresh process does not start by bypassing Redis. */
export async function redisReady(redis: Redis, timeoutMs: number): Promise<boolean> {
  if (redis.status === 'ready') return true;
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      redis.off('ready', onReady);
      resolve(false);
    }, timeoutMs);
    const onReady = () => {
      clearTimeout(timer);
      resolve(true);
    };
    redis.once('ready', onReady);
  });
}
