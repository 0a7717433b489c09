import { randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import { connectRedis, redisReady } from '../cache/redis.js';
import { presentOrSkip } from './availability.js';
import { silentLogger } from './harness.js';

export const REDIS_URL = 'redis://127.0.0.1:6379';

/** Whether the machine's Redis answers; under CI=true its absence is a failure, not a skip. */
export async function redisAvailable(): Promise<boolean> {
  const probe = new Redis(REDIS_URL, {
    lazyConnect: true,
    maxRetriesPerRequest: 0,
    connectTimeout: 500,
    retryStrategy: () => null,
  });
  probe.on('error', () => undefined);
  try {
    await probe.connect();
    return (await probe.ping()) === 'PONG';
  } catch {
    return presentOrSkip(`Redis: nothing answers at ${REDIS_URL}`);
  } finally {
    probe.disconnect();
  }
}

/** A client on the real Redis whose keys live under a prefix of their own, so tests never share state. */
export async function isolatedRedis(): Promise<Redis> {
  const redis = connectRedis(REDIS_URL, silentLogger, { keyPrefix: `test-${randomUUID()}:` });
  if (!(await redisReady(redis, 2000))) throw new Error(`Redis at ${REDIS_URL} did not become ready`);
  return redis;
}
