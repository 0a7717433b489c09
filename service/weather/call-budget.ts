import type { Redis } from 'ioredis';
import type { ServiceMetrics } from '../telemetry/service-metrics.js';
import { CallRefused } from './call-refused.js';

export interface CallBudgetOptions {
  dailyBudget: number;
  /** Shares the count across replicas; without it, or while it fails, this process counts alone. */
  redis?: Redis;
  metrics: Pick<ServiceMetrics, 'weatherBudgetRemaining' | 'weatherCacheErrors'>;
  now: () => number;
}

/** The daily (UTC) budget of API calls. */
export interface CallBudget {
  /** Takes one call from the day's budget; throws CallRefused('budget') once it is spent. */
  spend(): Promise<void>;
  /** Today, and the calls taken from its budget so far. */
  usage(): Promise<{ day: string; used: number }>;
}

export function createCallBudget(o: CallBudgetOptions): CallBudget {
  let local = { day: '', used: 0 };
  let remaining = o.dailyBudget;
  o.metrics.weatherBudgetRemaining.addCallback((r) => r.observe(remaining));

  const today = () => new Date(o.now()).toISOString().slice(0, 10);
  const keyOf = (day: string) => `weather:budget:${day}`;
  const spendLocally = (day: string) => {
    if (local.day !== day) local = { day, used: 0 };
    return ++local.used;
  };

  return {
    async spend() {
      const day = today();
      let used: number;
      if (o.redis) {
        try {
          const key = keyOf(day);
          const [[, count]] = (await o.redis
            .multi()
            .incr(key)
            .expire(key, 2 * 86_400)
            .exec()) as [[unknown, number]];
          used = count;
        } catch {
          o.metrics.weatherCacheErrors.add(1, { operation: 'budget' });
          used = spendLocally(day);
        }
      } else {
        used = spendLocally(day);
      }
      remaining = Math.max(0, o.dailyBudget - Math.min(used, o.dailyBudget));
      if (used > o.dailyBudget) throw new CallRefused('budget');
    },

    async usage() {
      const day = today();
      const used = o.redis
        ? Number((await o.redis.get(keyOf(day)).catch(() => null)) ?? 0)
        : local.day === day
          ? local.used
          : 0;
      return { day, used };
    },
  };
}
