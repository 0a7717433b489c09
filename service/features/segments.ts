import { SEGMENT_NAMES, type SegmentName } from '../domain/segments.js';
import { FEATURE_NAMES, type FeatureName, isWeekdayRushHour } from './booking-features.js';

export { SEGMENT_NAMES, type SegmentName };

/**
 * Which bookings belong to each segment (domain/segments.ts names them): where a delay prediction matters most
 * (rush hour in the wet, urgent bookings, the longest delays) and where a model is likely to be wrong. Defined
 * once, here, from the feature vector as served and a reference delay; the training pipeline (models/), the
 * retraining comparison and the feedback counters all use it.
 *
 * The reference delay is the best estimate of the booking's true median delay the caller has: the generator's
 * own median on synthetic data, the delay the service served on production rows (nobody knows a real ride's
 * median). rush_heavy_rain lies inside rush_wet; the other dimensions (rush x weather, priority, distance)
 * each give a booking exactly one segment.
 */
export interface SegmentInput {
  vector: readonly number[];
  referenceDelay: number;
}

/** Rain at or above this rate (mm/h) is heavy. */
export const HEAVY_RAIN_MM_H = 2;
/**
 * The top decile of the default synthetic world's true median delay (seed 42, 50,000 training bookings:
 * 16.99 min): a fixed threshold, so the segment means the same minutes for every model and in production.
 */
export const LONG_DELAY_MINUTES = 17;

const at = (vector: readonly number[], name: FeatureName) => vector[FEATURE_NAMES.indexOf(name)] as number;
const rush = (v: readonly number[]) => isWeekdayRushHour(at(v, 'hour_local'), at(v, 'is_weekend') === 1);
const wet = (v: readonly number[]) => at(v, 'precipitation_mm_h') > 0 || at(v, 'snow_mm_h') > 0;
const km = (v: readonly number[]) => at(v, 'distance_km');

const TESTS: Record<SegmentName, (input: SegmentInput) => boolean> = {
  rush_wet: ({ vector }) => rush(vector) && wet(vector),
  rush_dry: ({ vector }) => rush(vector) && !wet(vector),
  off_peak_wet: ({ vector }) => !rush(vector) && wet(vector),
  off_peak_dry: ({ vector }) => !rush(vector) && !wet(vector),
  rush_heavy_rain: ({ vector }) => rush(vector) && at(vector, 'precipitation_mm_h') >= HEAVY_RAIN_MM_H,
  priority_standard: ({ vector }) => at(vector, 'priority_code') === 0,
  priority_medical: ({ vector }) => at(vector, 'priority_code') === 1,
  priority_urgent: ({ vector }) => at(vector, 'priority_code') === 2,
  long_delay: ({ referenceDelay }) => referenceDelay >= LONG_DELAY_MINUTES,
  distance_under_3km: ({ vector }) => km(vector) < 3,
  distance_3_to_8km: ({ vector }) => km(vector) >= 3 && km(vector) < 8,
  distance_8_to_15km: ({ vector }) => km(vector) >= 8 && km(vector) < 15,
  distance_15km_plus: ({ vector }) => km(vector) >= 15,
};

/** The segments a booking belongs to, in SEGMENT_NAMES order; none for a vector of another width. */
export function segmentsOf(input: SegmentInput): SegmentName[] {
  if (input.vector.length !== FEATURE_NAMES.length) return [];
  return SEGMENT_NAMES.filter((name) => TESTS[name](input));
}
