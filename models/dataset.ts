import { createHash } from 'node:crypto';
import { NEUTRAL_WEATHER } from '../service/domain/weather.js';
import { bookingFeatures, FEATURE_NAMES, featureVector } from '../service/features/booking-features.js';
import { heuristicEstimate } from '../service/predictors/heuristic.js';
import { noiseSd, type RawBooking } from './generator.js';

/** z such that P(|N(0,1)| <= z) = 0.8: the oracle's 80% interval around the true median. */
const Z_80 = 1.2815515655446004;

export const LABEL_COLUMNS = [
  'actual_delay_minutes',
  'oracle_median',
  'oracle_low',
  'oracle_high',
  'heuristic_delay',
  'heuristic_low',
  'heuristic_high',
] as const;

/**
 * The training matrix, written by running the service's own feature code over raw bookings: feature
 * columns in FEATURE_SCHEMA order, then the labels and the baselines the trainer compares against.
 */
export function datasetCsv(rows: RawBooking[]): { csv: string; sha256: string } {
  const lines = [[...FEATURE_NAMES, ...LABEL_COLUMNS].join(',')];
  for (const row of rows) {
    const features = bookingFeatures(row.booking, row.weather);
    const heuristic = heuristicEstimate(features);
    const median = row.median_delay_minutes;
    const spread = Z_80 * noiseSd(median);
    const values = [
      ...featureVector(features, NEUTRAL_WEATHER),
      row.actual_delay_minutes,
      median,
      Math.max(0, median - spread),
      median + spread,
      heuristic.delay_minutes,
      heuristic.interval.low,
      heuristic.interval.high,
    ];
    lines.push(values.map((v) => Number(v.toFixed(6))).join(','));
  }
  const csv = `${lines.join('\n')}\n`;
  return { csv, sha256: createHash('sha256').update(csv).digest('hex') };
}
