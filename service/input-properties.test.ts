import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { booking, eventually, postJson, testApp } from './test-support/harness.js';
import { testService } from './test-support/service.js';

/* Whatever JSON arrives, the answer is a 2xx or a 4xx problem document: never a 5xx. */
let t: Awaited<ReturnType<typeof testApp>>;
beforeAll(async () => {
  t = await testApp({ flags: { mlWeight: 50 } });
});
afterAll(() => t.close());

const send = (path: string, body: string) =>
  t.app.request(path, { method: 'POST', headers: { 'content-type': 'application/json' }, body });

const bookingLike = fc.record(
  {
    booking_id: fc.oneof(fc.string(), fc.string({ unit: 'grapheme', maxLength: 200 }), fc.integer()),
    scheduled_at: fc.oneof(
      fc.date({ noInvalidDate: true }).map((d) => d.toISOString()),
      fc.string(),
      fc.double(),
    ),
    pickup: fc.oneof(fc.record({ lat: fc.double(), lon: fc.double() }), fc.anything()),
    dropoff: fc.oneof(
      fc.record({ lat: fc.double({ min: -90, max: 90 }), lon: fc.double({ min: -180, max: 180 }) }),
      fc.anything(),
    ),
    distance_km: fc.oneof(fc.double(), fc.string()),
    driver_active_bookings: fc.oneof(fc.integer(), fc.double(), fc.constant('3')),
    priority: fc.oneof(fc.constantFrom('standard', 'medical', 'urgent'), fc.string()),
  },
  { requiredKeys: [] },
);

describe('no JSON input produces a 5xx', () => {
  it.each(['/v1/predictions', '/v1/predictions/batch', '/v1/feedback', '/v1/feedback/batch'])(
    '%s',
    async (path) => {
      await fc.assert(
        fc.asyncProperty(
          fc.oneof(
            fc.json(),
            bookingLike.map((b) => JSON.stringify(b)),
            fc.array(bookingLike, { maxLength: 5 }).map((bookings) => JSON.stringify({ bookings })),
          ),
          async (body) => {
            const res = await send(path, body);
            expect(res.status, body).toBeLessThan(500);
            if (res.status >= 400) expect(res.headers.get('content-type')).toBe('application/problem+json');
          },
        ),
        { numRuns: 150 },
      );
    },
  );

  it('answers deep nesting, NaN and Infinity literals, numbers as strings and unicode ids cleanly', async () => {
    const deep = `${'['.repeat(5000)}${']'.repeat(5000)}`;
    for (const body of [
      deep,
      '{"booking_id":"x","scheduled_at":"2026-11-25T08:00:00Z","pickup":{"lat":NaN,"lon":1},"dropoff":{"lat":1,"lon":1}}',
      '{"booking_id":"x","scheduled_at":"2026-11-25T08:00:00Z","pickup":{"lat":Infinity,"lon":1},"dropoff":{"lat":1,"lon":1}}',
      '{"booking_id":"x","scheduled_at":"2026-11-25T08:00:00Z","pickup":{"lat":"48.8","lon":"2.3"},"dropoff":{"lat":1,"lon":1}}',
      '{"booking_id":"x","scheduled_at":"2026-11-25T08:00:00Z","pickup":{"lat":1e999,"lon":1},"dropoff":{"lat":1,"lon":1}}',
    ]) {
      const res = await send('/v1/predictions', body);
      expect(res.status).toBe(400);
    }
    const unicode = await send(
      '/v1/predictions',
      JSON.stringify({
        booking_id: 'réservation-🚑-東京',
        scheduled_at: '2026-11-25T08:00:00+09:00',
        pickup: { lat: 35.68, lon: 139.76 },
        dropoff: { lat: 35.7, lon: 139.7 },
      }),
    );
    expect(unicode.status).toBe(200);
    expect((await unicode.json()).booking_id).toBe('réservation-🚑-東京');
  });
});

describe('every id the API accepts is stored and found again by its feedback', () => {
  it('refuses ids the database would refuse or alter (NUL, unpaired surrogates), keeps every other', async () => {
    const stored = await testService({ flags: { mlWeight: 50 } });
    try {
      const lone = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;
      const refused = { test: (id: string) => id.includes('\u0000') || lone.test(id) };
      const unit = fc.oneof(
        { weight: 6, arbitrary: fc.string({ unit: 'grapheme-composite', maxLength: 3 }) },
        { weight: 1, arbitrary: fc.constantFrom('\u0000', '\u001f', '\u007f', '\ud800', '\udfff', '\t') },
      );
      let n = 0;
      await fc.assert(
        fc.asyncProperty(
          fc.array(unit, { minLength: 1, maxLength: 12 }).map((parts) => parts.join('')),
          async (raw) => {
            n += 1;
            const id = `${n}-${raw}`.slice(0, 128);
            const res = await postJson(stored.app, '/v1/predictions', booking({ booking_id: id }));
            if (refused.test(id)) {
              expect(res.status, JSON.stringify(id)).toBe(400);
              expect(JSON.stringify(await res.json())).toContain('/booking_id');
              const fb = await postJson(stored.app, '/v1/feedback', {
                booking_id: id,
                actual_delay_minutes: 3,
              });
              expect(fb.status).toBe(400);
              return;
            }
            expect(res.status, JSON.stringify(id)).toBe(200);
            expect((await res.json()).booking_id).toBe(id);
            await eventually(
              () => stored.predictionLog.depth(),
              (d) => d === 0,
            );
            const fb = await postJson(stored.app, '/v1/feedback', {
              booking_id: id,
              actual_delay_minutes: 3,
            });
            expect(fb.status, JSON.stringify(id)).toBe(200);
            expect((await fb.json()).outcome).toBe('recorded');
          },
        ),
        { numRuns: 60 },
      );
      expect(await stored.metricValue('delay.prediction_log.dropped')).toBe(0);
    } finally {
      await stored.close();
    }
  }, 60_000);
});
