import { describe, expect, it } from 'vitest';
import { NEUTRAL_WEATHER } from '../domain/weather.js';
import { silentLogger, testMetrics } from '../test-support/harness.js';
import { createApiGate } from './api-gate.js';
import { CallRefused } from './call-refused.js';
import { type OpenWeatherMapClient, WeatherApiError } from './openweathermap.js';

/** A client that answers what `answer` says, counting its calls; and a budget counting what is spent. */
function gate(options: { authRetryMs?: number; budgetLeft?: number } = {}) {
  let answer: () => Promise<never> | Promise<typeof NEUTRAL_WEATHER> = async () => NEUTRAL_WEATHER;
  const calls: string[] = [];
  const client: OpenWeatherMapClient = {
    current: async () => {
      calls.push('current');
      return answer();
    },
    forecast: async () => {
      calls.push('forecast');
      return { slots: [] };
    },
  };
  let spent = 0;
  const budget = {
    spend: async () => {
      spent++;
      if (spent > (options.budgetLeft ?? Number.POSITIVE_INFINITY)) throw new CallRefused('budget');
    },
  };
  let clock = Date.now();
  const m = testMetrics();
  const g = createApiGate({
    client,
    budget,
    apiTimeoutMs: 1000,
    authRetryMs: options.authRetryMs ?? 3_600_000,
    metrics: m.metrics,
    logger: silentLogger,
    now: () => clock,
  });
  return {
    gate: g,
    calls,
    spent: () => spent,
    metricValue: m.value,
    answers: (next: typeof answer) => {
      answer = next;
    },
    advance: (ms: number) => {
      clock += ms;
    },
  };
}

const failing = (status: number, kind: string, retryAfterS?: number) => async () => {
  throw new WeatherApiError(status, kind, `answered ${status}`, retryAfterS);
};
const outcome = (p: Promise<unknown>) =>
  p.then(
    () => 'ok',
    (err: unknown) =>
      err instanceof CallRefused ? `refused:${err.reason}` : `failed:${(err as Error).message}`,
  );

describe('API gate', () => {
  it('calls the endpoint asked, spends budget for each call, and counts calls by endpoint and status', async () => {
    const g = gate();
    expect(await g.gate.call('current', 48.9, 2.4)).toEqual(NEUTRAL_WEATHER);
    expect(await g.gate.call('forecast', 48.9, 2.4)).toEqual({ slots: [] });
    expect(g.calls).toEqual(['current', 'forecast']);
    expect(g.spent()).toBe(2);
    expect(await g.metricValue('delay.weather.api_calls', { endpoint: 'current', status: '200' })).toBe(1);
    expect(await g.metricValue('delay.weather.api_duration', { endpoint: 'forecast' })).toBe(1);
  });

  it('after a 401, refuses without spending budget until authRetryMs passed or the key is retried', async () => {
    const g = gate({ authRetryMs: 60_000 });
    g.answers(failing(401, 'auth'));
    expect(await outcome(g.gate.call('current', 1, 2))).toBe('failed:answered 401');
    expect(g.gate.keyRejected()).toBe(true);
    expect(await outcome(g.gate.call('current', 1, 2))).toBe('refused:auth');
    expect(g.spent()).toBe(1);
    g.advance(60_001);
    expect(g.gate.keyRejected()).toBe(false);
    expect(await outcome(g.gate.call('current', 1, 2))).toBe('failed:answered 401');
    g.gate.retryKey();
    g.answers(async () => NEUTRAL_WEATHER);
    expect(await outcome(g.gate.call('current', 1, 2))).toBe('ok');
    expect(g.calls).toHaveLength(3);
  });

  it('after a 429, backs off for its Retry-After, or 60 s without one', async () => {
    const g = gate();
    g.answers(failing(429, 'rate_limited', 120));
    await outcome(g.gate.call('current', 1, 2));
    g.advance(119_000);
    expect(await outcome(g.gate.call('current', 1, 2))).toBe('refused:rate_limited');
    g.advance(2000);
    g.answers(failing(429, 'rate_limited'));
    await outcome(g.gate.call('current', 1, 2));
    g.advance(59_000);
    expect(await outcome(g.gate.call('current', 1, 2))).toBe('refused:rate_limited');
    g.advance(2000);
    g.answers(async () => NEUTRAL_WEATHER);
    expect(await outcome(g.gate.call('current', 1, 2))).toBe('ok');
    expect(g.calls).toHaveLength(3);
  });

  it('opens the circuit on repeated failures, then refuses without calling', async () => {
    const g = gate();
    g.answers(failing(500, 'server_error'));
    for (let i = 0; i < 5; i++) await outcome(g.gate.call('current', 1, 2));
    expect(g.gate.circuit()).toBe('open');
    expect(await outcome(g.gate.call('current', 1, 2))).toBe('refused:circuit_open');
    expect(g.calls).toHaveLength(5);
    expect(await g.metricValue('delay.weather.api_calls', { status: '500' })).toBe(5);
  });

  it.each([
    ['a rejected key', failing(401, 'auth'), 1],
    ['a rate limit', failing(429, 'rate_limited', 1), 1],
  ])('keeps the circuit closed on %s, which has its own pause', async (_name, answer, pauseS) => {
    const g = gate({ authRetryMs: pauseS * 1000 });
    g.answers(answer);
    for (let i = 0; i < 6; i++) {
      await outcome(g.gate.call('current', 1, 2));
      g.advance(pauseS * 1000 + 1);
    }
    expect(g.calls).toHaveLength(6);
    expect(g.gate.circuit()).toBe('closed');
  });

  it('does not call the API once the budget refuses', async () => {
    const g = gate({ budgetLeft: 1 });
    expect(await outcome(g.gate.call('current', 1, 2))).toBe('ok');
    expect(await outcome(g.gate.call('current', 1, 2))).toBe('refused:budget');
    expect(g.calls).toHaveLength(1);
  });
});
