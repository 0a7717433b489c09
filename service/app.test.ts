import { readFileSync } from 'node:fs';
import { afterEach, describe, expect, it } from 'vitest';
import type { PointEstimate } from './domain/estimate.js';
import { SHADOW_BASIS, type ShadowBaseline } from './features/moments.js';
import type { FlagService } from './flags/flag-service.js';
import { createReject } from './http/openapi.js';
import type { ModelPredictor, ModelRegistry } from './models/model-registry.js';
import { ModelTimeoutError } from './models/onnx-model.js';
import { PredictionSchema } from './predictions/schemas.js';
import { feedbackRoutes } from './routes/feedback.js';
import { REJECTION_REASONS } from './telemetry/service-metrics.js';
import { booking, postJson, testApp, testMetrics } from './test-support/harness.js';
import { testService } from './test-support/service.js';

type TestApp = Awaited<ReturnType<typeof testApp>>;
const apps: TestApp[] = [];
async function appWith(options: Parameters<typeof testApp>[0] = {}) {
  const t = await testApp(options);
  apps.push(t);
  return t;
}
afterEach(async () => {
  await Promise.all(apps.splice(0).map((t) => t.close()));
});

const bookings = (n: number) =>
  Array.from({ length: n }, (_, i) => booking({ booking_id: `bk-${i}`, distance_km: i % 30 }));

function registryWith(
  predict: (n: number) => Promise<PointEstimate[]>,
  shadowBaseline?: ShadowBaseline,
): ModelRegistry {
  return {
    ready: () => true,
    versions: () => ['gbt-v2'],
    lookup: (version) => ({
      ok: true,
      model: {
        version,
        predict: (vectors) => predict(vectors.length),
        ...(shadowBaseline ? { shadowBaseline } : {}),
      },
    }),
  };
}
const fixedEstimate: PointEstimate = {
  delay_minutes: 7.5,
  interval: { low: 4, high: 12, level: 0.8 },
  contributing_factors: [{ factor: 'distance', minutes: 3, label: 'distance: +3.0 min' }],
};

describe('POST /v1/predictions', () => {
  it('answers a heuristic prediction in the documented shape', async () => {
    const { app } = await appWith({ flags: { mlWeight: 0 } });
    const res = await postJson(
      app,
      '/v1/predictions',
      booking({ driver_active_bookings: 3, priority: 'medical' }),
    );
    expect(res.status).toBe(200);
    const body = PredictionSchema.parse(await res.json());
    expect(body).toMatchObject({
      booking_id: 'bk-1',
      source: 'heuristic',
      fallback_reason: null,
      model_version: null,
      variant: 'heuristic',
      weather: { source: 'default' },
    });
    expect(body.interval.low).toBeLessThanOrEqual(body.delay_minutes);
    expect(body.interval.high).toBeGreaterThanOrEqual(body.delay_minutes);
    expect(body.contributing_factors.map((f) => f.factor)).toContain('priority');
  });

  it('falls back to the heuristic, and says so, when the assigned model is unavailable', async () => {
    const { app, metricValue } = await appWith({ flags: { mlWeight: 100 } });
    const res = await postJson(app, '/v1/predictions', booking());
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({
      source: 'heuristic',
      fallback_reason: 'model_unavailable',
      variant: 'gbt-v2',
      model_version: null,
    });
    expect(
      await metricValue('delay.prediction.fallbacks', {
        reason: 'model_unavailable',
        model_version: 'gbt-v2',
      }),
    ).toBe(1);
    expect(await metricValue('delay.predictions', { source: 'heuristic', variant: 'gbt-v2' })).toBe(1);
  });

  it('answers 503 naming the reason when ML fails and ml-fallback-on-error is off', async () => {
    const { app, metricValue } = await appWith({ flags: { mlWeight: 100, fallbackOnError: false } });
    const res = await postJson(app, '/v1/predictions', booking());
    expect(res.status).toBe(503);
    expect(res.headers.get('content-type')).toBe('application/problem+json');
    expect(await res.json()).toMatchObject({ fallback_reason: 'model_unavailable', model_version: 'gbt-v2' });
    expect(await metricValue('delay.http.rejected_requests', { reason: 'ml_unavailable' })).toBe(1);
  });

  it('serves a loaded model on its cohort', async () => {
    const { app } = await appWith({
      flags: { mlWeight: 100 },
      deps: { models: registryWith(async (n) => Array(n).fill(fixedEstimate)) },
    });
    const body = await (await postJson(app, '/v1/predictions', booking())).json();
    expect(body).toMatchObject({
      source: 'ml',
      model_version: 'gbt-v2',
      delay_minutes: 7.5,
      fallback_reason: null,
    });
    expect(body.confidence).toBeCloseTo(1 / 1.8, 2);
  });

  it('measures how far ML sits from its shadow heuristic, and times requests by where the flag sent them', async () => {
    const { app, metricValue } = await appWith({
      flags: { mlWeight: 100 },
      deps: { models: registryWith(async (n) => Array(n).fill(fixedEstimate)) },
    });
    await postJson(app, '/v1/predictions', booking());
    const rules = await (await appWith({ flags: { mlWeight: 0 } })).app.request('/v1/predictions', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(booking()),
    });
    const shadow = (await rules.json()).delay_minutes as number;
    expect(await metricValue('delay.prediction.shadow_compared', { model_version: 'gbt-v2' })).toBe(1);
    expect(await metricValue('delay.prediction.shadow_gap', { model_version: 'gbt-v2' })).toBeCloseTo(
      Math.abs(7.5 - shadow),
      2,
    );
    expect(await metricValue('delay.prediction.duration', { endpoint: 'single', assignment: 'ml' })).toBe(1);
    expect(await metricValue('delay.prediction.duration', { assignment: 'heuristic' })).toBe(0);
  });

  it("judges the gap to the shadow against the card's baseline for the moment, above and below, when the card has one", async () => {
    const shadowOf = async () =>
      (
        await (
          await (
            await appWith({ flags: { mlWeight: 0 } })
          ).app.request('/v1/predictions', {
            method: 'POST',
            headers: { 'content-type': 'application/json' },
            body: JSON.stringify(booking()),
          })
        ).json()
      ).delay_minutes as number;
    const shadow = await shadowOf();
    // A baseline that expects ML 2 minutes above the rules for every booking (the intercept of each hour).
    const expectsTwoAbove: ShadowBaseline = {
      basis: SHADOW_BASIS,
      coefficients: SHADOW_BASIS.map((name) => (name.startsWith('hour_of_week=') ? 2 : 0)),
    };
    const judged = await appWith({
      flags: { mlWeight: 100 },
      deps: { models: registryWith(async (n) => Array(n).fill(fixedEstimate), expectsTwoAbove) },
    });
    await postJson(judged.app, '/v1/predictions', booking());
    const departure = 7.5 - shadow - 2;
    const by = (direction: string) =>
      judged.metricValue('delay.prediction.shadow_departure', { model_version: 'gbt-v2', direction });
    expect(await by('above')).toBeCloseTo(Math.max(departure, 0), 2);
    expect(await by('below')).toBeCloseTo(Math.max(-departure, 0), 2);
    expect(
      await judged.metricValue('delay.prediction.shadow_departure_compared', { model_version: 'gbt-v2' }),
    ).toBe(1);

    // Without a baseline the version is left out of the signal: nothing counted, the raw gap still is.
    const unjudged = await appWith({
      flags: { mlWeight: 100 },
      deps: { models: registryWith(async (n) => Array(n).fill(fixedEstimate)) },
    });
    await postJson(unjudged.app, '/v1/predictions', booking());
    expect(
      await unjudged.metricValue('delay.prediction.shadow_departure_compared', { model_version: 'gbt-v2' }),
    ).toBe(0);
    expect(await unjudged.metricValue('delay.prediction.shadow_compared', { model_version: 'gbt-v2' })).toBe(
      1,
    );
  });

  it('falls back with model_error when inference throws', async () => {
    const { app, metricValue } = await appWith({
      flags: { mlWeight: 100 },
      deps: {
        models: registryWith(async () => {
          throw new Error('inference failed');
        }),
      },
    });
    const body = await (await postJson(app, '/v1/predictions', booking())).json();
    expect(body).toMatchObject({ source: 'heuristic', fallback_reason: 'model_error', variant: 'gbt-v2' });
    expect(await metricValue('delay.prediction.fallbacks', { reason: 'model_error' })).toBe(1);
  });

  it('falls back with model_timeout when the model says it was too slow', async () => {
    const { app, metricValue } = await appWith({
      flags: { mlWeight: 100 },
      deps: {
        models: registryWith(async () => {
          throw new ModelTimeoutError('gbt-v2', 300, 250);
        }),
      },
    });
    const body = await (await postJson(app, '/v1/predictions', booking())).json();
    expect(body).toMatchObject({ source: 'heuristic', fallback_reason: 'model_timeout', variant: 'gbt-v2' });
    expect(await metricValue('delay.prediction.fallbacks', { reason: 'model_timeout' })).toBe(1);
    expect(await metricValue('delay.prediction.fallbacks', { reason: 'model_error' })).toBe(0);
  });

  it('marks weather disabled when the weather-enrichment flag is off', async () => {
    const { app } = await appWith({ flags: { weatherEnrichment: false } });
    expect(await (await postJson(app, '/v1/predictions', booking())).json()).toMatchObject({
      weather: { source: 'disabled' },
    });
  });

  it('names every bad field by JSON pointer', async () => {
    const { app, metricValue } = await appWith();
    const res = await postJson(app, '/v1/predictions', {
      booking_id: '',
      scheduled_at: '2026-11-25T08:15:00',
      pickup: { lat: 91, lon: 2 },
      dropoff: { lat: 48, lon: -181 },
      priority: 'vip',
      distance_km: 'far',
    });
    expect(res.status).toBe(400);
    expect(res.headers.get('content-type')).toBe('application/problem+json');
    const problem = await res.json();
    expect(problem).toMatchObject({ type: '/problems/validation', status: 400 });
    expect(problem.errors.map((e: { pointer: string }) => e.pointer).sort()).toEqual(
      ['/booking_id', '/distance_km', '/dropoff/lon', '/pickup/lat', '/priority', '/scheduled_at'].sort(),
    );
    expect(await metricValue('delay.http.rejected_requests', { reason: 'validation' })).toBe(1);
    expect(await metricValue('delay.predictions')).toBe(0);
  });

  it('refuses coordinates that imply a trip longer than distance_km may be, unless distance_km is given', async () => {
    const { app } = await appWith();
    const tokyo = { lat: 35.68, lon: 139.69 };
    const res = await postJson(app, '/v1/predictions', booking({ dropoff: tokyo }));
    expect(res.status).toBe(400);
    expect((await res.json()).errors).toEqual([
      expect.objectContaining({ pointer: '/dropoff', detail: expect.stringContaining('over 1000 km') }),
    ]);
    expect(
      (await postJson(app, '/v1/predictions', booking({ dropoff: tokyo, distance_km: 12 }))).status,
    ).toBe(200);
    // 700 km straight (910 km by road): allowed.
    const nice = { lat: 43.7, lon: 7.27 };
    expect((await postJson(app, '/v1/predictions', booking({ dropoff: nice }))).status).toBe(200);
  });

  it('ignores unknown fields, so clients may send newer ones', async () => {
    const { app } = await appWith();
    const res = await postJson(app, '/v1/predictions', booking({ passenger_count: 3 }));
    expect(res.status).toBe(200);
  });

  it.each([
    ['an id over 128 chars', booking({ booking_id: 'x'.repeat(129) }), '/booking_id'],
    ['a timestamp without an offset', booking({ scheduled_at: '2026-11-25 08:15' }), '/scheduled_at'],
    ['a negative driver load', booking({ driver_active_bookings: -1 }), '/driver_active_bookings'],
    ['a fractional driver load', booking({ driver_active_bookings: 1.5 }), '/driver_active_bookings'],
  ])('rejects %s', async (_name, body, pointer) => {
    const { app } = await appWith();
    const res = await postJson(app, '/v1/predictions', body);
    expect(res.status).toBe(400);
    expect((await res.json()).errors[0].pointer).toBe(pointer);
  });
});

describe('timestamps (RFC 3339, what Postgres stores)', () => {
  const at = (scheduled_at: string) => booking({ scheduled_at, driver_active_bookings: 2 });

  it('accepts t and z in lower case, as RFC 3339 allows, and reads them as upper case', async () => {
    const { app } = await appWith({ flags: { mlWeight: 0 } });
    const upper = await postJson(app, '/v1/predictions', at('2026-11-25T07:15:00Z'));
    const lower = await postJson(app, '/v1/predictions', at('2026-11-25t07:15:00z'));
    expect(lower.status).toBe(200);
    expect((await lower.json()).delay_minutes).toBe((await upper.json()).delay_minutes);
  });

  it('reads rush hour in the offset sent: the same instant as 07:15Z and 02:15-05:00 is two local times', async () => {
    const { app } = await appWith({ flags: { mlWeight: 0 } });
    const morning = await (await postJson(app, '/v1/predictions', at('2026-11-25T07:15:00Z'))).json();
    const night = await (await postJson(app, '/v1/predictions', at('2026-11-25T02:15:00-05:00'))).json();
    const factors = (p: { contributing_factors: { factor: string }[] }) =>
      p.contributing_factors.map((f) => f.factor);
    expect(factors(morning)).toContain('rush_hour_morning');
    expect(factors(night)).not.toContain('rush_hour_morning');
    expect(morning.delay_minutes).toBeGreaterThan(night.delay_minutes);
  });

  it.each([
    ['+14:00', 200],
    ['-12:00', 200],
    ['+05:45', 200],
    ['+23:59', 400],
    ['+14:30', 400],
    ['-12:30', 400],
    ['-23:00', 400],
  ])('offset %s: %i', async (offset, status) => {
    const { app } = await appWith();
    const res = await postJson(app, '/v1/predictions', at(`2026-11-25T08:15:00${offset}`));
    expect(res.status).toBe(status);
    if (status === 400) {
      expect((await res.json()).errors).toEqual([
        {
          pointer: '/scheduled_at',
          detail: `offset ${offset} is beyond the offsets time zones use (-12:00 to +14:00)`,
        },
      ]);
    }
  });

  it.each([
    ['year 0000', '0000-06-01T08:15:00Z'],
    ['past 9999 once in UTC', '9999-12-31T23:00:00-05:00'],
    ['before year 0001 once in UTC', '0001-01-01T00:30:00+01:00'],
  ])('refuses %s with a 400 naming the field, in a batch by its index', async (_name, scheduled_at) => {
    const { app, metricValue } = await appWith();
    const res = await postJson(app, '/v1/predictions/batch', {
      bookings: [booking({ booking_id: 'fine' }), at(scheduled_at)],
    });
    expect(res.status).toBe(400);
    expect((await res.json()).errors).toEqual([
      {
        pointer: '/bookings/1/scheduled_at',
        detail: 'must fall in the years 0001 to 9999 once converted to UTC',
      },
    ]);
    expect(await metricValue('delay.predictions')).toBe(0);
  });

  it('accepts the first and last instants Postgres and JavaScript both print with four-digit years', async () => {
    const { app } = await appWith();
    for (const edge of ['0001-01-01T00:00:00Z', '9999-12-31T23:59:59.999Z', '9999-12-31T23:59:59+00:00'])
      expect((await postJson(app, '/v1/predictions', at(edge))).status, edge).toBe(200);
  });

  it('says in the OpenAPI document that the offset sent is the local time read', async () => {
    const { app } = await appWith();
    const doc = await (await app.request('/openapi.json')).json();
    const { scheduled_at } = doc.components.schemas.Booking.properties;
    expect(scheduled_at).toMatchObject({ type: 'string', format: 'date-time' });
    expect(scheduled_at.description).toContain('read in the offset sent');
    expect(scheduled_at.description).toContain('-12:00 and +14:00');
    const routes = feedbackRoutes({
      feedback: { submit: async () => [] },
      reject: createReject(testMetrics().metrics),
      batchMaxBookings: 10,
    });
    const feedbackDoc = routes.getOpenAPI31Document({ openapi: '3.1.0', info: { title: 't', version: '1' } });
    const schemas = feedbackDoc.components?.schemas as Record<string, { properties: Record<string, object> }>;
    const observedAt = schemas.Feedback?.properties.observed_at;
    expect(observedAt).toMatchObject({ type: 'string', format: 'date-time' });
    expect(JSON.stringify(observedAt)).toContain('-12:00 to +14:00');
  });
});

describe('with the committed ONNX model', () => {
  async function realModelApp(
    mlWeight: number,
    {
      timeoutMs = 250,
      wrap = (model: ModelPredictor) => model,
    }: { timeoutMs?: number; wrap?: (model: ModelPredictor) => ModelPredictor } = {},
  ) {
    const { createModelRegistry } = await import('./models/model-registry.js');
    const { loadOnnxModel } = await import('./models/onnx-model.js');
    const { silentLogger, testMetrics } = await import('./test-support/harness.js');
    const models = createModelRegistry({
      load: async (version) => wrap(await loadOnnxModel('models', version, { timeoutMs })),
      logger: silentLogger,
      metrics: testMetrics().metrics,
    });
    await models.preload(['gbt-v2']);
    return appWith({ flags: { mlWeight }, deps: { models } });
  }

  it("times the model, not the event loop's work before it: a booking kept waiting 400 ms is still answered by ML", async () => {
    // Other requests' work (another batch's inference, validation, answers) holds the event loop between the
    // call and the model's turn: a stand-in for it, 400 ms of synchronous work queued just before that turn.
    const busy = (model: ModelPredictor): ModelPredictor => ({
      ...model,
      predict: (vectors) => {
        setImmediate(() => {
          const until = performance.now() + 400;
          while (performance.now() < until) {
            // the event loop is held, as by another request's synchronous work
          }
        });
        return model.predict(vectors);
      },
    });
    const { app, metricValue } = await realModelApp(100, { timeoutMs: 100, wrap: busy });
    const body = await (await postJson(app, '/v1/predictions', booking())).json();
    expect(body).toMatchObject({ source: 'ml', fallback_reason: null, model_version: 'gbt-v2' });
    expect(await metricValue('delay.prediction.fallbacks')).toBe(0);
  });

  it("falls back with model_timeout when the model's own call is slower than the timeout, and counts it", async () => {
    // A call of 250 rows takes some 6 ms of CPU: over a 1 ms timeout.
    const { app, metricValue } = await realModelApp(100, { timeoutMs: 1 });
    const res = await postJson(app, '/v1/predictions/batch', { bookings: bookings(1000) });
    const { predictions } = await res.json();
    for (const p of predictions)
      expect(p).toMatchObject({ source: 'heuristic', fallback_reason: 'model_timeout', variant: 'gbt-v2' });
    expect(await metricValue('delay.prediction.fallbacks', { reason: 'model_timeout' })).toBe(1000);
  });

  it('serves ML predictions with an ordered interval and readable contributions', async () => {
    const { app } = await realModelApp(100);
    const res = await postJson(
      app,
      '/v1/predictions',
      booking({ driver_active_bookings: 4, distance_km: 12 }),
    );
    const body = PredictionSchema.parse(await res.json());
    expect(body).toMatchObject({
      source: 'ml',
      model_version: 'gbt-v2',
      variant: 'gbt-v2',
      fallback_reason: null,
    });
    expect(body.interval.low).toBeLessThanOrEqual(body.delay_minutes);
    expect(body.delay_minutes).toBeLessThanOrEqual(body.interval.high);
    expect(body.contributing_factors).toHaveLength(5);
    expect(body.contributing_factors.map((f) => f.factor)).toContain('driver_active_bookings');
    expect(body.contributing_factors[0]?.label).toMatch(/min$/);
  });

  it('scores a batch of 1,000 in request order, ML and heuristic side by side', async () => {
    const { app } = await realModelApp(50);
    const input = bookings(1000);
    const { predictions } = await (await postJson(app, '/v1/predictions/batch', { bookings: input })).json();
    expect(predictions.map((p: { booking_id: string }) => p.booking_id)).toEqual(
      input.map((b) => b.booking_id),
    );
    const sources = predictions.map((p: { source: string }) => p.source);
    expect(sources.filter((s: string) => s === 'ml').length).toBeGreaterThan(400);
    expect(sources.filter((s: string) => s === 'heuristic').length).toBeGreaterThan(400);
  });
});

describe('POST /v1/predictions/batch', () => {
  it('scores one batch at a time with 8 in line, refuses more with 503 and Retry-After, and answers singles meanwhile', async () => {
    let open: () => void = () => undefined;
    const gate = new Promise<void>((r) => {
      open = r;
    });
    // Batches hold the model until the gate opens; a single booking is answered at once.
    const { app, metricValue } = await appWith({
      flags: { mlWeight: 100 },
      deps: {
        models: registryWith(async (n) => {
          if (n > 1) await gate;
          return Array(n).fill(fixedEstimate);
        }),
      },
    });
    const batch = () => Promise.resolve(postJson(app, '/v1/predictions/batch', { bookings: bookings(5) }));
    const admitted = Array.from({ length: 9 }, batch);
    const refused = await batch();
    expect(refused.status).toBe(503);
    expect(refused.headers.get('retry-after')).toBe('1');
    expect(await refused.json()).toMatchObject({ type: '/problems/overloaded', status: 503 });
    expect(await metricValue('delay.http.rejected_requests', { reason: 'overloaded' })).toBe(1);

    const single = await postJson(app, '/v1/predictions', booking());
    expect(await single.json()).toMatchObject({ source: 'ml', fallback_reason: null });

    open();
    const answered = await Promise.all(admitted);
    expect(answered.map((r) => r.status)).toEqual(Array(9).fill(200));
    // The line is free again.
    expect((await batch()).status).toBe(200);
  });

  it('answers in request order, one prediction per booking', async () => {
    const { app, metricValue } = await appWith({ flags: { mlWeight: 50 } });
    const input = bookings(200);
    const res = await postJson(app, '/v1/predictions/batch', { bookings: input });
    expect(res.status).toBe(200);
    const { predictions } = await res.json();
    expect(predictions.map((p: { booking_id: string }) => p.booking_id)).toEqual(
      input.map((b) => b.booking_id),
    );
    const variants = new Set(predictions.map((p: { variant: string }) => p.variant));
    expect(variants).toEqual(new Set(['heuristic', 'gbt-v2']));
    expect(await metricValue('delay.predictions', { endpoint: 'batch' })).toBe(200);
  });

  it('makes one model call per model version for the whole batch', async () => {
    const calls: number[] = [];
    const { app } = await appWith({
      flags: { mlWeight: 50 },
      deps: {
        models: registryWith(async (n) => {
          calls.push(n);
          return Array(n).fill(fixedEstimate);
        }),
      },
    });
    const { predictions } = await (
      await postJson(app, '/v1/predictions/batch', { bookings: bookings(300) })
    ).json();
    const onMl = predictions.filter((p: { source: string }) => p.source === 'ml').length;
    expect(calls).toEqual([onMl]);
  });

  it('rejects the whole batch when one booking is bad, naming its index', async () => {
    const { app, metricValue } = await appWith();
    const input = bookings(5);
    input[3] = booking({ booking_id: 'bk-3', pickup: { lat: 'north', lon: 2 } });
    const res = await postJson(app, '/v1/predictions/batch', { bookings: input });
    expect(res.status).toBe(400);
    const problem = await res.json();
    expect(problem.detail).toContain('index 3');
    expect(problem.errors).toEqual([expect.objectContaining({ pointer: '/bookings/3/pickup/lat' })]);
    expect(await metricValue('delay.predictions')).toBe(0);
  });

  it('accepts 1,000 bookings and refuses 1,001 or none', async () => {
    const { app } = await appWith();
    expect((await postJson(app, '/v1/predictions/batch', { bookings: bookings(1000) })).status).toBe(200);
    const tooMany = await postJson(app, '/v1/predictions/batch', { bookings: bookings(1001) });
    expect(tooMany.status).toBe(400);
    expect((await tooMany.json()).errors[0].pointer).toBe('/bookings');
    expect((await postJson(app, '/v1/predictions/batch', { bookings: [] })).status).toBe(400);
  });
});

describe('transport errors are problem documents', () => {
  it('413 over the body limit', async () => {
    const { app, metricValue } = await appWith({ bodyLimitBytes: 10_000 });
    const res = await postJson(app, '/v1/predictions/batch', { bookings: bookings(200) });
    expect(res.status).toBe(413);
    expect(res.headers.get('content-type')).toBe('application/problem+json');
    expect(await metricValue('delay.http.rejected_requests', { reason: 'body_too_large' })).toBe(1);
  });

  it('413 for a chunked body that grows past the limit', async () => {
    const { app } = await appWith({ bodyLimitBytes: 10_000 });
    const chunked = (path: string, body: unknown) =>
      app.request(path, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'transfer-encoding': 'chunked' },
        body: new Blob([JSON.stringify(body)]).stream(),
        duplex: 'half',
      } as RequestInit);
    expect((await chunked('/v1/predictions/batch', { bookings: bookings(100) })).status).toBe(413);
    expect((await chunked('/v1/predictions', booking())).status).toBe(200);
  });

  it('415 for a body that is not JSON', async () => {
    const { app } = await appWith();
    const res = await app.request('/v1/predictions', {
      method: 'POST',
      headers: { 'content-type': 'text/plain' },
      body: JSON.stringify(booking()),
    });
    expect(res.status).toBe(415);
    expect((await res.json()).detail).toContain('text/plain');
    const none = await app.request('/v1/predictions', { method: 'POST', body: JSON.stringify(booking()) });
    expect(none.status).toBe(415);
  });

  it('400 for malformed JSON', async () => {
    const { app } = await appWith();
    const res = await postJson(app, '/v1/predictions', '{"booking_id": ');
    expect(res.status).toBe(400);
    expect(await res.json()).toMatchObject({ type: '/problems/malformed-json' });
  });

  it('404 and 405 as JSON, 405 with Allow', async () => {
    const { app } = await appWith();
    const missing = await app.request('/v2/nothing');
    expect(missing.status).toBe(404);
    expect(missing.headers.get('content-type')).toBe('application/problem+json');
    const wrongMethod = await app.request('/v1/predictions', { method: 'GET' });
    expect(wrongMethod.status).toBe(405);
    expect(wrongMethod.headers.get('allow')).toBe('POST');
    expect((await app.request('/healthz', { method: 'DELETE' })).headers.get('allow')).toBe('GET');
  });

  it('500 without a stack trace, and the error counted', async () => {
    const { app, metricValue } = await appWith({
      deps: {
        weather: {
          lookup: async () => {
            throw new TypeError('secret internals at /srv/weather.ts:12');
          },
        },
      },
    });
    const res = await postJson(app, '/v1/predictions', booking());
    expect(res.status).toBe(500);
    const text = await res.text();
    expect(text).not.toContain('secret internals');
    expect(text).not.toMatch(/\bat \//);
    expect(JSON.parse(text)).toMatchObject({ type: '/problems/internal', status: 500 });
    expect(await metricValue('delay.http.rejected_requests', { reason: 'internal' })).toBe(1);
  });
});

describe('health, readiness, flag status, OpenAPI', () => {
  it('is alive and ready on loaded flags and registry', async () => {
    const { app } = await appWith();
    expect(await (await app.request('/healthz')).json()).toEqual({ status: 'ok' });
    const ready = await app.request('/readyz');
    expect(ready.status).toBe(200);
    expect(await ready.json()).toEqual({ status: 'ready', parts: { flags: 'ready', models: 'ready' } });
  });

  it('is not ready, naming the part, while flags are not loaded; predictions wait', async () => {
    const { flags: real } = await appWith();
    const loading: FlagService = { ...real, ready: () => false };
    const { app } = await appWith({ deps: { flags: loading } });
    const res = await app.request('/readyz');
    expect(res.status).toBe(503);
    expect(await res.json()).toEqual({ status: 'not_ready', parts: { flags: 'not_ready', models: 'ready' } });
    const prediction = await postJson(app, '/v1/predictions', booking());
    expect(prediction.status).toBe(503);
    expect(prediction.headers.get('retry-after')).toBe('1');
  });

  it('reports the rollout as this instance sees it', async () => {
    const { app } = await appWith({ flags: { mlWeight: 25 } });
    const status = await (await app.request('/v1/flags/status')).json();
    expect(status).toMatchObject({
      source: { kind: 'file' },
      provider_status: 'READY',
      ml_enabled: true,
      ml_percentage: 25,
      model_versions: ['gbt-v2'],
      models_loaded: [],
      last_error: null,
    });
    expect(Date.parse(status.last_changed_at)).toBeGreaterThan(Date.now() - 60_000);
  });

  it('serves its OpenAPI document', async () => {
    // The whole service, so every route is mounted (feedback and reports with a database, the webhook with a token).
    const service = await testService({ env: { ALERTMANAGER_WEBHOOK_TOKEN: 'openapi-webhook-token-0123' } });
    apps.push(service);
    const doc = await (await service.app.request('/openapi.json')).json();
    expect(doc.openapi).toBe('3.1.0');
    expect(Object.keys(doc.paths)).toEqual(
      expect.arrayContaining([
        '/v1/predictions',
        '/v1/predictions/batch',
        '/healthz',
        '/readyz',
        '/v1/flags/status',
      ]),
    );
    // What an OpenAPI linter's recommended rules ask: an operationId and tags on every operation, unique ids,
    // no body problems (413, 415) on a GET, and the bearer schemes on the endpoints that take a token.
    const operations = Object.entries(doc.paths).flatMap(([path, methods]) =>
      Object.entries(methods as Record<string, Record<string, unknown>>).map(([method, op]) => ({
        path,
        method,
        op,
      })),
    );
    expect(operations.length).toBeGreaterThanOrEqual(13);
    const ids = operations.map(({ op }) => op.operationId);
    expect(ids.every((id) => typeof id === 'string' && id.length > 0)).toBe(true);
    expect(new Set(ids).size).toBe(ids.length);
    for (const { path, method, op } of operations) {
      expect((op.tags as string[] | undefined)?.length, `${method} ${path}`).toBeGreaterThan(0);
      if (method === 'get') expect(Object.keys(op.responses as object), path).not.toContain('413');
      if (method === 'get') expect(Object.keys(op.responses as object), path).not.toContain('415');
    }
    const security = (path: string) => doc.paths[path].post.security;
    expect(security('/v1/predictions')).toEqual([{}, { predictionsToken: [] }]);
    expect(security('/v1/feedback')).toEqual([{}, { feedbackToken: [] }]);
    expect(security('/v1/webhooks/alertmanager')).toEqual([{ webhookToken: [] }]);
    for (const path of Object.keys(doc.paths).filter((p) => /^\/v1\/(ab-report|monitoring\/)/.test(p)))
      expect(doc.paths[path].get.security, path).toEqual([{}, { reportsToken: [] }]);
    expect(doc.paths['/v1/flags/status'].get.security).toEqual([]);
    expect(Object.keys(doc.components.securitySchemes).sort()).toEqual([
      'feedbackToken',
      'predictionsToken',
      'reportsToken',
      'webhookToken',
    ]);
    expect(doc.components.schemas.Booking.required).toEqual([
      'booking_id',
      'scheduled_at',
      'pickup',
      'dropoff',
    ]);
  });
});

describe('docs/api.md', () => {
  it('documents every rejection reason the code counts, and no other', () => {
    const rows = readFileSync('docs/api.md', 'utf8').matchAll(/^\| \d{3} \| `[^`]+` \| `([a-z_]+)` \|/gm);
    expect(new Set([...rows].map((m) => m[1]))).toEqual(new Set(REJECTION_REASONS));
  });
});
