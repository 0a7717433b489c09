import { afterEach, describe, expect, it } from 'vitest';
import type { PointEstimate } from '../domain/estimate.js';
import type { ModelRegistry } from '../models/model-registry.js';
import { booking, postJson, testApp } from '../test-support/harness.js';
import { type Prediction, PredictionSchema } from './schemas.js';

const apps: Awaited<ReturnType<typeof testApp>>[] = [];
afterEach(async () => {
  await Promise.all(apps.splice(0).map((t) => t.close()));
});

/** A model whose every third answer is a 20-minute delay (high risk), the others 3 minutes (low). */
const alternating: ModelRegistry = {
  ready: () => true,
  versions: () => ['gbt-v2'],
  lookup: (version) => ({
    ok: true,
    model: {
      version,
      predict: async (vectors) =>
        vectors.map(
          (_, i): PointEstimate => ({
            delay_minutes: i % 3 === 0 ? 20 : 3,
            interval: i % 3 === 0 ? { low: 15, high: 26, level: 0.8 } : { low: 1, high: 6, level: 0.8 },
            contributing_factors: [],
          }),
        ),
    },
  }),
};

describe('proactive reassignment candidates', () => {
  it('counts the answers given high risk, by the source that gave them', async () => {
    const t = await testApp({ flags: { mlWeight: 50 }, deps: { models: alternating } });
    apps.push(t);
    // Long trips in the evening rush give the rules high risks too.
    const bookings = Array.from({ length: 60 }, (_, i) =>
      booking({
        booking_id: `risk-${i}`,
        scheduled_at: '2026-11-25T18:00:00+01:00',
        distance_km: (i % 6) * 12,
      }),
    );
    const res = await postJson(t.app, '/v1/predictions/batch', { bookings });
    expect(res.status).toBe(200);
    const answered = ((await res.json()) as { predictions: Prediction[] }).predictions.map((p) =>
      PredictionSchema.parse(p),
    );
    const high = (source: string) =>
      answered.filter((p) => p.source === source && p.risk_level === 'high').length;
    // Both sources answered, each with high and other risks: the count is not all or nothing.
    for (const source of ['ml', 'heuristic']) {
      expect(high(source), source).toBeGreaterThan(0);
      expect(high(source), source).toBeLessThan(answered.filter((p) => p.source === source).length);
    }
    for (const source of ['ml', 'heuristic'])
      expect(await t.metricValue('delay.business.reassignment_candidates', { source }), source).toBe(
        high(source),
      );
  });
});
