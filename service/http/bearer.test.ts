import { describe, expect, it } from 'vitest';
import { booking, eventually, testApp } from '../test-support/harness.js';
import { testService } from '../test-support/service.js';
import { bearerTokenMatches } from './bearer.js';

const TOKEN = 'feedback-token-0123456789abcdef';

describe('bearer token', () => {
  it('matches only the exact token, in any scheme case', () => {
    expect(bearerTokenMatches(`Bearer ${TOKEN}`, TOKEN)).toBe(true);
    expect(bearerTokenMatches(`bearer ${TOKEN}`, TOKEN)).toBe(true);
    expect(bearerTokenMatches(`Bearer ${TOKEN}x`, TOKEN)).toBe(false);
    expect(bearerTokenMatches(TOKEN, TOKEN)).toBe(false);
    expect(bearerTokenMatches(undefined, TOKEN)).toBe(false);
  });
});

describe('feedback endpoints with FEEDBACK_TOKEN', () => {
  it('refuse a missing or wrong token before reading the body, count it, and accept the right one', async () => {
    const t = await testService({ flags: { mlWeight: 0 }, env: { FEEDBACK_TOKEN: TOKEN } });
    try {
      const post = (path: string, body: string, authorization?: string) =>
        t.app.request(path, {
          method: 'POST',
          headers: { 'content-type': 'application/json', ...(authorization ? { authorization } : {}) },
          body,
        });
      const item = JSON.stringify({ booking_id: 'tok-1', actual_delay_minutes: 4 });
      for (const [path, body] of [
        ['/v1/feedback', item],
        ['/v1/feedback/batch', JSON.stringify({ feedback: [JSON.parse(item)] })],
        ['/v1/feedback', '{not json'],
      ] as const) {
        for (const authorization of [undefined, 'Bearer wrong-token-0123456789', `Basic ${TOKEN}`]) {
          const res = await post(path, body, authorization);
          expect(res.status, `${path} ${authorization}`).toBe(401);
          expect(res.headers.get('www-authenticate')).toBe('Bearer');
          expect((await res.json()).type).toBe('/problems/unauthorized');
        }
      }
      expect(await t.metricValue('delay.http.rejected_requests', { reason: 'unauthorized' })).toBe(9);

      expect((await post('/v1/predictions', JSON.stringify(booking({ booking_id: 'tok-1' })))).status).toBe(
        200,
      );
      await eventually(
        () => t.predictionLog.depth(),
        (depth) => depth === 0,
      );
      const ok = await post('/v1/feedback', item, `Bearer ${TOKEN}`);
      expect(ok.status).toBe(200);
      expect(await ok.json()).toEqual({ booking_id: 'tok-1', outcome: 'recorded' });
      expect((await post('/v1/feedback', '{not json', `Bearer ${TOKEN}`)).status).toBe(400);
    } finally {
      await t.close();
    }
  });
});

describe('prediction endpoints with PREDICTIONS_TOKEN', () => {
  it('refuse a missing or wrong token, so no caller without it can replace what feedback scores', async () => {
    const t = await testApp({ flags: { mlWeight: 0 }, deps: { predictionsToken: TOKEN } });
    try {
      const post = (path: string, body: unknown, authorization?: string) =>
        t.app.request(path, {
          method: 'POST',
          headers: { 'content-type': 'application/json', ...(authorization ? { authorization } : {}) },
          body: JSON.stringify(body),
        });
      for (const [path, body] of [
        ['/v1/predictions', booking()],
        ['/v1/predictions/batch', { bookings: [booking()] }],
      ] as const) {
        expect((await post(path, body)).status).toBe(401);
        expect((await post(path, body, 'Bearer wrong-token-0123456789')).status).toBe(401);
        expect((await post(path, body, `Bearer ${TOKEN}`)).status).toBe(200);
      }
      expect(await t.metricValue('delay.http.rejected_requests', { reason: 'unauthorized' })).toBe(4);
    } finally {
      await t.close();
    }
  });
});
