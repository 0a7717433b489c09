import { describe, expect, it } from 'vitest';
import type { SegmentCheck } from '../service/retraining/segment-figures.js';
import { refusals } from './bar.js';

const passing = { mae_within_10pct_of_oracle: { value: 1.04, limit: 1.1, pass: true } };
const segmentOk: SegmentCheck = {
  segment: 'rush_wet',
  n: 455,
  judged: true,
  coverage_80: 0.8,
  bias: 0.1,
  pass: true,
};

describe('refusing a model', () => {
  it('refuses nothing when the card and every segment pass', () => {
    expect(refusals(passing, [segmentOk])).toEqual([]);
  });

  it("names each missed check of the card's overall bar", () => {
    const bar = {
      ...passing,
      coverage_80_within_4pts: { value: 0.71, limit: [0.76, 0.84], pass: false },
    };
    expect(refusals(bar, [segmentOk])).toEqual(['coverage_80_within_4pts: 0.71 (limit [0.76,0.84])']);
  });

  it('names each segment that misses the segment bar, after the overall ones', () => {
    const bad: SegmentCheck = {
      ...segmentOk,
      bias: -0.87,
      pass: false,
      reason: 'rush_wet (n 455): mean bias -0.87 min beyond ±0.3',
    };
    const bar = { ...passing, weather_r2_lift: { value: 0.01, limit: 0.05, pass: false } };
    expect(refusals(bar, [bad, { ...segmentOk, segment: 'long_delay' }])).toEqual([
      'weather_r2_lift: 0.01 (limit 0.05)',
      'rush_wet (n 455): mean bias -0.87 min beyond ±0.3',
    ]);
  });
});
