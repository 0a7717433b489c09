/**
 * The segments a model is judged on besides the whole (service/features/segments.ts says which bookings
 * belong to each): a bounded label list, so the feedback counters can carry it.
 */
export const SEGMENT_NAMES = [
  'rush_wet',
  'rush_dry',
  'off_peak_wet',
  'off_peak_dry',
  'rush_heavy_rain',
  'priority_standard',
  'priority_medical',
  'priority_urgent',
  'long_delay',
  'distance_under_3km',
  'distance_3_to_8km',
  'distance_8_to_15km',
  'distance_15km_plus',
] as const;
export type SegmentName = (typeof SEGMENT_NAMES)[number];
