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

  it('pulls a thin hour of the week toward the same hour of every day, and a well-filled one stays near its own', () => {
    const feature = { name: 'driver_active_bookings', bin_edges: [1], baseline_ratios: [0.5, 0.5] };
    const at = (hour: number, weekend: 0 | 1, load: number) => [
      hour,
      3,
      weekend,
      1,
      5,
      12,
      load,
      0,
      10,
      0,
      0,
      3,
      10,
      0,
    ];
    const vectors = [
      ...Array.from({ length: 900 }, (_, i) => at(8.5, 0, i % 10 === 0 ? 0 : 3)),
      // Nights: 400 weekday rows, all without load; 10 weekend rows, half of them loaded.
      ...Array.from({ length: 400 }, () => at(3.5, 0, 0)),
      ...Array.from({ length: 10 }, (_, i) => at(3.5, 1, i % 2 === 0 ? 0 : 3)),
    ];
    const moments = momentRatios(vectors, feature, false);
    expect(Object.keys(moments)).toEqual(WEEK_HOURS);
    const P = MOMENT_PRIOR_ROWS;
    // 08:00 on weekdays: its own 900 rows, the prior being the same hour of every day (the same 900 rows).
    const hour08 = (90 + P * 0.5) / (900 + P);
    expect(moments['weekday 08']?.[0]).toBeCloseTo((90 + P * hour08) / (900 + P), 4);
    // A weekend night is pulled toward nights (mostly unloaded), not toward the year's half-and-half.
    const night = (405 + P * 0.5) / (410 + P);
    expect(moments['weekend 03']?.[0]).toBeCloseTo((5 + P * night) / (10 + P), 4);
    expect(moments['weekend 03']?.[0]).toBeGreaterThan(0.8);
    // An hour no row has: the year's shares.
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
    const card = JSON.parse(readFileSync('models/gbt-v2.json', 'utf8')) as {
      shadow_baseline: ShadowBaseline & { mean_abs_departure: number };
    };
    const model = await loadOnnxModel('models', 'gbt-v2');
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
