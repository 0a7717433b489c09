import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { vectorsOf } from '../../models/holdout.js';
import { generateTraffic } from '../../models/traffic.js';
import { bookingFeatures } from '../features/booking-features.js';
import { expectedShadowGap, type ShadowBaseline, WEEK_HOURS } from '../features/moments.js';
import { loadOnnxModel } from '../models/onnx-model.js';
import { heuristicEstimate } from '../predictors/heuristic.js';
import { fitShadowBaseline, MOMENT_PRIOR_ROWS, momentRatios, ridgeFit } from './moment-baselines.js';

describe('moment baselines', () => {
  it('recovers known coefficients by least squares', () => {
    const rows = Array.from({ length: 200 }, (_, i) => [1, i % 7, (i * 13) % 11]);
    const y = rows.map(([a, b, c]) => 2 * (a as number) - 0.5 * (b as number) + 3 * (c as number));
    const beta = ridgeFit(rows, y, 1e-9);
    expect(beta[0]).toBeCloseTo(2, 5);
    expect(beta[1]).toBeCloseTo(-0.5, 5);
    expect(beta[2]).toBeCloseTo(3, 5);
  });

  it("pulls a thin moment's bin shares toward the year's and leaves a well-filled one near its own", () => {
    const feature = { name: 'driver_active_bookings', bin_edges: [1], baseline_ratios: [0.5, 0.5] };
    const at = (hour: number, load: number) => [hour, 3, 0, 1, 5, 12, load, 0, 10, 0, 0, 3, 10, 0];
    const vectors = [
      ...Array.from({ length: 900 }, (_, i) => at(8.5, i % 10 === 0 ? 0 : 3)),
      ...Array.from({ length: 10 }, () => at(3.5, 0)),
    ];
    const moments = momentRatios(vectors, feature, false);
    expect(Object.keys(moments)).toEqual(WEEK_HOURS);
    expect(moments['weekday 08']?.[0]).toBeCloseTo(
      (90 + MOMENT_PRIOR_ROWS * 0.5) / (900 + MOMENT_PRIOR_ROWS),
      4,
    );
    expect(moments['weekday 03']?.[0]).toBeCloseTo(
      (10 + MOMENT_PRIOR_ROWS * 0.5) / (10 + MOMENT_PRIOR_ROWS),
      4,
    );
    expect(moments['weekend 12']).toEqual([0.5, 0.5]);
  });

  it('fits the gap of a model that differs from the rules by the hour, and reports a healthy departure near 0', () => {
    const vectors = Array.from({ length: 2000 }, (_, i) => [
      i % 24,
      3,
      0,
      1 + (i % 12),
      5,
      12,
      1,
      0,
      10,
      0,
      0,
      3,
      10,
      0,
    ]);
    const heuristic = vectors.map(() => 5);
    const ml = vectors.map((v) => 5 + ((v[0] as number) >= 7 && (v[0] as number) < 10 ? 4 : 1));
    const baseline = fitShadowBaseline(vectors, ml, heuristic);
    expect(baseline.mean_abs_departure).toBeLessThan(0.01);
    expect(expectedShadowGap(baseline, vectors[8] as number[])).toBeCloseTo(4, 2);
    expect(expectedShadowGap(baseline, vectors[13] as number[])).toBeCloseTo(1, 2);
  });

  it('gives the committed model a baseline that follows a time-ordered wet rush hour, where the raw gap does not', async () => {
    const card = JSON.parse(readFileSync('models/gbt-v1.json', 'utf8')) as {
      shadow_baseline: ShadowBaseline & { mean_abs_departure: number };
    };
    const model = await loadOnnxModel('models', 'gbt-v1');
    // The morning rush of a wet January Thursday, as it arrives.
    const rows = generateTraffic({ seed: 1, startDay: '2025-01-23', startHour: 7, hours: 2, perSecond: 4 });
    const vectors = vectorsOf(rows);
    const ml = (await model.predict(vectors)).map((e) => e.delay_minutes);
    const rules = rows.map((r) => heuristicEstimate(bookingFeatures(r.booking, r.weather)).delay_minutes);
    const mean = (xs: number[]) => xs.reduce((s, x) => s + x, 0) / xs.length;
    const gap = mean(ml.map((d, i) => Math.abs(d - (rules[i] as number))));
    const departure = mean(
      ml.map((d, i) =>
        Math.abs(d - (rules[i] as number) - expectedShadowGap(card.shadow_baseline, vectors[i] as number[])),
      ),
    );
    console.log(
      `wet rush hour: |ML - rules| ${gap.toFixed(2)} min, departure from the card's baseline ${departure.toFixed(2)} min`,
    );
    expect(card.shadow_baseline.mean_abs_departure).toBeLessThan(1);
    expect(departure).toBeLessThan(gap / 2);
    expect(departure).toBeLessThan(1.5);
  });
});
