import { createHash } from 'node:crypto';
import { NEUTRAL_WEATHER } from '../service/domain/weather.js';
import { bookingFeatures, FEATURE_NAMES, featureVector } from '../service/features/booking-features.js';
import { heuristicEstimate } from '../service/predictors/heuristic.js';
import { generateBookings, type RawBooking, WORLDS, type WorldName } from './generator.js';

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

/**
 * A card's training and holdout rows. random: two draws of the year (seeds `seed` and `seed + 1`). time: one
 * draw of train + test bookings in time order, the first months to train, the last to test, as production would.
 */
export function trainingRows(d: {
  seed: number;
  trainRows: number;
  testRows: number;
  world: WorldName;
  holdout: 'random' | 'time';
}): { train: RawBooking[]; test: RawBooking[] } {
  const world = WORLDS[d.world];
  if (d.holdout === 'random') {
    return {
      train: generateBookings({ seed: d.seed, count: d.trainRows, world }),
      test: generateBookings({ seed: d.seed + 1, count: d.testRows, world }),
    };
  }
  const all = generateBookings({ seed: d.seed, count: d.trainRows + d.testRows, world });
  const time = (r: RawBooking) => Date.parse(r.booking.scheduled_at);
  all.sort((a, b) => time(a) - time(b));
  return { train: all.slice(0, d.trainRows), test: all.slice(d.trainRows) };
}
