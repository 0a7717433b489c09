import { createHash } from 'node:crypto';
import { NEUTRAL_WEATHER } from '../service/domain/weather.js';
import { bookingFeatures, FEATURE_NAMES, featureVector } from '../service/features/booking-features.js';
import { heuristicEstimate } from '../service/predictors/heuristic.js';
import type { RawBooking } from './generator.js';

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
    const values = [
      ...featureVector(features, NEUTRAL_WEATHER),
      row.actual_delay_minutes,
      row.median_delay_minutes,
      row.oracle_interval.low,
      row.oracle_interval.high,
      heuristic.delay_minutes,
      heuristic.interval.low,
      heuristic.interval.high,
    ];
    lines.push(values.map((v) => Number(v.toFixed(6))).join(','));
  }
  const csv = `${lines.join('\n')}\n`;
  return { csv, sha256: createHash('sha256').update(csv).digest('hex') };
}
