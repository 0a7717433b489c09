import { HEURISTIC_RULES } from '../predictors/heuristic.js';
import { FEATURE_NAMES, type FeatureName, isWeekdayRushHour } from './booking-features.js';

/**
 * What is normal for a moment (docs/adr/0007-rollback-policy.md, docs/adr/0006-drift-and-retraining.md).
 * Traffic arrives one hour of one day at a time: a signal whose healthy value moves with the hour, the day and
 * the weather is judged against the model card's baseline for the same moment, never against a pooled year.
 * Computed from the feature vector as served, in FEATURE_SCHEMA order, for serving and for the card alike.
 */
const at = (name: FeatureName) => FEATURE_NAMES.indexOf(name);
const I = {
  hour: at('hour_local'),
  weekend: at('is_weekend'),
  month: at('month'),
  distance: at('distance_km'),
  duration: at('estimated_duration_min'),
  load: at('driver_active_bookings'),
  priority: at('priority_code'),
  temperature: at('temperature_c'),
  rain: at('precipitation_mm_h'),
  snow: at('snow_mm_h'),
  wind: at('wind_speed_m_s'),
  visibility: at('visibility_km'),
  rainAtRush: at('rain_at_rush_mm_h'),
};
const HOURS = Array.from({ length: 24 }, (_, h) => String(h).padStart(2, '0'));

/** The hour of the week a booking falls in: weekday or weekend, and its local hour ("weekday 08"). */
export const WEEK_HOURS: readonly string[] = ['weekday', 'weekend'].flatMap((d) =>
  HOURS.map((h) => `${d} ${h}`),
);
/** Its index in WEEK_HOURS: read on every prediction, so no string is built. */
function weekHourIndex(vector: readonly number[]): number {
  const hour = Math.min(23, Math.max(0, Math.floor(vector[I.hour] as number)));
  return (vector[I.weekend] === 1 ? 24 : 0) + hour;
}
export const weekHourOf = (vector: readonly number[]): string => WEEK_HOURS[weekHourIndex(vector)] as string;

/** The month a booking falls in ("01".."12"): weather is judged against its month, not the year. */
export const MONTHS: readonly string[] = HOURS.slice(1, 13);
const monthNumber = (vector: readonly number[]) =>
  Math.min(12, Math.max(1, Math.round(vector[I.month] as number)));
export const monthOf = (vector: readonly number[]): string => MONTHS[monthNumber(vector) - 1] as string;

const hinge = (x: number, knot: number) => Math.max(x - knot, 0);

/**
 * The basis of the card's linear baseline for the signed gap between the model and the rules (ML - shadow):
 * one term per hour of the week (weekday and weekend, the intercept), one per month but January, and the booking
 * and weather terms where the rules and the delays they miss bend (the rules' 20 km and 5 mm/h knees, rain at
 * rush hour, fog). The healthy gap is 1 min at lunchtime and 6 in a wet morning rush: this baseline says which.
 */
export const SHADOW_BASIS: readonly string[] = [
  ...WEEK_HOURS.map((k) => `hour_of_week=${k}`),
  ...MONTHS.slice(1).map((m) => `month=${m}`),
  'distance_km',
  'distance_km_beyond_20',
  'estimated_duration_min',
  'estimated_duration_min_beyond_25',
  'driver_active_bookings',
  'driver_active_bookings_squared',
  'driver_active_bookings_at_rush',
  'priority_medical',
  'priority_urgent',
  'frost_c',
  'precipitation_mm_h',
  'precipitation_sqrt',
  'precipitation_beyond_5',
  'snow_mm_h',
  'snow_sqrt',
  'wind_beyond_8',
  'fog',
  'rain_at_rush_mm_h',
  'rain_at_rush_sqrt',
  'rain_at_rush_beyond_5',
  // The rules' own steps: inside an hour (their rush windows end at 09:30 and start at 16:30), rain at rush, fog, wind.
  'rules_morning_rush',
  'rules_evening_rush',
  'rules_rain_at_rush',
  'rules_low_visibility',
  'rules_strong_wind',
];

/** The basis terms after the hour of the week and the month, in SHADOW_BASIS order. */
function numericTerms(vector: readonly number[]): number[] {
  const v = (i: number) => vector[i] as number;
  const weekend = v(I.weekend) === 1;
  const rush = isWeekdayRushHour(v(I.hour), weekend) ? 1 : 0;
  const within = (w: { from: number; to: number }) => v(I.hour) >= w.from && v(I.hour) < w.to;
  const rulesMorning = within(HEURISTIC_RULES.morningRush);
  const rulesEvening = within(HEURISTIC_RULES.eveningRush);
  const rulesRushShare = weekend ? HEURISTIC_RULES.weekendRushShare : 1;
  return [
    v(I.distance),
    hinge(v(I.distance), 20),
    v(I.duration),
    hinge(v(I.duration), 25),
    v(I.load),
    v(I.load) ** 2,
    v(I.load) * rush,
    v(I.priority) === 1 ? 1 : 0,
    v(I.priority) === 2 ? 1 : 0,
    Math.max(-v(I.temperature), 0),
    v(I.rain),
    Math.sqrt(Math.max(v(I.rain), 0)),
    hinge(v(I.rain), 5),
    v(I.snow),
    Math.sqrt(Math.max(v(I.snow), 0)),
    hinge(v(I.wind), 8),
    Math.max(0, 1 - v(I.visibility) / 2),
    v(I.rainAtRush),
    Math.sqrt(Math.max(v(I.rainAtRush), 0)),
    hinge(v(I.rainAtRush), 5),
    rulesMorning ? rulesRushShare : 0,
    rulesEvening ? rulesRushShare : 0,
    !weekend && (rulesMorning || rulesEvening)
      ? Math.min(v(I.rain) * HEURISTIC_RULES.rainMinutesPerMmH, HEURISTIC_RULES.rainCap)
      : 0,
    v(I.visibility) * 1000 < HEURISTIC_RULES.lowVisibility.belowMeters ? 1 : 0,
    v(I.wind) > HEURISTIC_RULES.strongWind.aboveMetersPerSecond ? 1 : 0,
  ];
}

/** Where the month terms and the numeric terms start in SHADOW_BASIS (January has no term: the reference). */
const MONTH_OFFSET = WEEK_HOURS.length;
const NUMERIC_OFFSET = MONTH_OFFSET + MONTHS.length - 1;

/** The whole basis vector of a booking, for fitting: one-hot hour of the week and month, then the numeric terms. */
export function shadowBasis(vector: readonly number[]): number[] {
  const x = new Array<number>(NUMERIC_OFFSET).fill(0);
  x[weekHourIndex(vector)] = 1;
  const month = monthNumber(vector);
  if (month > 1) x[MONTH_OFFSET + month - 2] = 1;
  return [...x, ...numericTerms(vector)];
}

/** A card's baseline of the gap between its model and the rules: coefficients over SHADOW_BASIS. */
export interface ShadowBaseline {
  basis: readonly string[];
  coefficients: readonly number[];
}

/**
 * What the card's holdout says ML - shadow is, on average, for a booking like this one: shadowBasis · coefficients,
 * read without building the one-hot part, as it runs on every ML answer.
 */
export function expectedShadowGap(baseline: ShadowBaseline, vector: readonly number[]): number {
  const c = baseline.coefficients;
  const month = monthNumber(vector);
  let sum = (c[weekHourIndex(vector)] as number) + (month > 1 ? (c[MONTH_OFFSET + month - 2] as number) : 0);
  const terms = numericTerms(vector);
  for (let k = 0; k < terms.length; k++) sum += (terms[k] as number) * (c[NUMERIC_OFFSET + k] as number);
  return sum;
}
