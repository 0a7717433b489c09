import { describe, expect, it } from 'vitest';
import { FEATURE_NAMES } from '../features/booking-features.js';
import { LONG_DELAY_MINUTES, SEGMENT_NAMES, type SegmentName, segmentsOf } from '../features/segments.js';
import {
  checkSegments,
  figuresOf,
  type ScoredBooking,
  SEGMENT_BAR,
  segmentFigures,
  segmentRegressions,
} from './segment-figures.js';

/** A feature vector with the named features set, the rest 0 (a weekday: is_weekend 0). */
function vector(values: Partial<Record<(typeof FEATURE_NAMES)[number], number>>) {
  return FEATURE_NAMES.map((name) => values[name] ?? 0);
}

describe('segments', () => {
  it('put a wet weekday 08:30 booking at rush hour, in the wet, and a Saturday one off peak', () => {
    const wet = vector({ hour_local: 8.5, precipitation_mm_h: 2.5, priority_code: 2, distance_km: 16 });
    expect(segmentsOf({ vector: wet, referenceDelay: LONG_DELAY_MINUTES })).toEqual([
      'rush_wet',
      'rush_heavy_rain',
      'priority_urgent',
      'long_delay',
      'distance_15km_plus',
    ]);
    const saturday = vector({
      hour_local: 8.5,
      is_weekend: 1,
      day_of_week: 6,
      snow_mm_h: 0.4,
      distance_km: 2,
    });
    expect(segmentsOf({ vector: saturday, referenceDelay: LONG_DELAY_MINUTES - 0.01 })).toEqual([
      'off_peak_wet',
      'priority_standard',
      'distance_under_3km',
    ]);
  });

  it('give every booking exactly one segment of each partitioning dimension', () => {
    for (const hour of [0, 7, 9.49, 9.5, 16.5, 19.49, 19.5]) {
      for (const distance_km of [0.3, 3, 8, 15]) {
        const names = segmentsOf({ vector: vector({ hour_local: hour, distance_km }), referenceDelay: 1 });
        expect(names.filter((n) => /^(rush|off_peak)_(wet|dry)$/.test(n))).toHaveLength(1);
        expect(names.filter((n) => n.startsWith('distance_'))).toHaveLength(1);
        expect(names.filter((n) => n.startsWith('priority_'))).toHaveLength(1);
      }
    }
  });
});

const row = (actual: number, delay: number, segments: SegmentName[] = []): ScoredBooking => ({
  actual,
  delay,
  low: delay - 1,
  high: delay + 1,
  segments,
});

describe('segment figures', () => {
  it('count MAE, bias (predicted - actual) and the shares below, inside and above the interval', () => {
    const f = figuresOf([row(10, 10), row(13, 10), row(8.5, 10), row(9, 10)]);
    expect(f).toEqual({ n: 4, mae: 1.375, bias: -0.125, coverage_80: 0.5, below: 0.25, above: 0.25 });
    expect(figuresOf([])).toEqual({ n: 0, mae: 0, bias: 0, coverage_80: 0, below: 0, above: 0 });
  });

  it('report every segment, empty ones with n 0', () => {
    const report = segmentFigures([row(10, 10, ['rush_wet']), row(12, 10, ['rush_wet', 'long_delay'])]);
    expect(Object.keys(report.segments)).toEqual(SEGMENT_NAMES);
    expect(report.all.n).toBe(2);
    expect(report.segments.rush_wet).toMatchObject({ n: 2, bias: -1, coverage_80: 0.5 });
    expect(report.segments.priority_urgent.n).toBe(0);
  });
});

/** n bookings of one segment: `inside` of them on the prediction, the rest above or below the interval by 2 min. */
function segment(name: SegmentName, n: number, inside: number, { above = 0, shift = 0 } = {}) {
  return Array.from({ length: n }, (_, i) => {
    if (i < inside) return row(10 - shift, 10, [name]);
    return i < inside + above ? row(12, 10, [name]) : row(8, 10, [name]);
  });
}

describe('the segment bar', () => {
  const verdict = (rows: ScoredBooking[], name: SegmentName) =>
    checkSegments(segmentFigures(rows)).find((c) => c.segment === name);

  it('passes a segment with 80% coverage and no bias', () => {
    expect(verdict(segment('rush_wet', 400, 320, { above: 40 }), 'rush_wet')).toMatchObject({
      judged: true,
      pass: true,
    });
  });

  it('refuses coverage below 0.76, naming the share above the interval', () => {
    expect(verdict(segment('rush_wet', 400, 300, { above: 50 }), 'rush_wet')).toMatchObject({
      pass: false,
      reason: 'rush_wet (n 400): 80% coverage 0.75 outside 0.76..0.84 (below 0.125, above 0.125)',
    });
  });

  it('refuses coverage above 0.84: an interval too wide', () => {
    const check = verdict(segment('priority_urgent', 400, 344, { above: 28 }), 'priority_urgent');
    expect(check).toMatchObject({ coverage_80: 0.86, pass: false });
    expect(check?.reason).toContain('80% coverage 0.86 outside 0.76..0.84');
  });

  it('refuses a mean bias beyond ±0.3 min, either way', () => {
    const under = verdict(segment('long_delay', 500, 400, { above: 50, shift: -0.4 }), 'long_delay');
    expect(under).toMatchObject({ pass: false, bias: -0.32 });
    expect(under?.reason).toBe('long_delay (n 500): mean bias -0.32 min beyond ±0.3');
    const over = verdict(segment('long_delay', 500, 400, { above: 50, shift: 0.4 }), 'long_delay');
    expect(over).toMatchObject({ pass: false, bias: 0.32 });
  });

  it(`does not judge a segment of fewer than ${SEGMENT_BAR.minBookings} bookings`, () => {
    const check = verdict(segment('rush_heavy_rain', SEGMENT_BAR.minBookings - 1, 0), 'rush_heavy_rain');
    expect(check).toMatchObject({ judged: false, pass: true, coverage_80: 0 });
    expect(check).not.toHaveProperty('reason');
  });
});

describe('champion against challenger, per segment', () => {
  const good = segment('rush_wet', 400, 320, { above: 40 });
  const biased = segment('rush_wet', 400, 320, { above: 40, shift: -0.5 });
  const checks = (rows: ScoredBooking[]) => checkSegments(segmentFigures(rows));

  it('names a segment the challenger fails where the champion passes', () => {
    expect(segmentRegressions(checks(good), checks(biased))).toEqual([
      'rush_wet (n 400): mean bias -0.4 min beyond ±0.3',
    ]);
  });

  it('holds nothing against a challenger that fails only where the champion fails too, or passes', () => {
    expect(segmentRegressions(checks(biased), checks(biased))).toEqual([]);
    expect(segmentRegressions(checks(biased), checks(good))).toEqual([]);
    expect(segmentRegressions(checks(good), checks(good))).toEqual([]);
  });
});
