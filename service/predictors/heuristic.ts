import { floorFactor, type PointEstimate } from '../domain/estimate.js';
import type { BookingFeatures } from '../features/booking-features.js';

/**
 * The rules the model replaces: deterministic, additive, documented in docs/heuristic.md.
 * Each rule contributes minutes; the delay is their sum (never below zero). Being additive, the
 * contributions are the explanation: no attribution method is needed.
 */

export const HEURISTIC_RULES = {
  baseMinutes: 2,
  morningRush: { from: 7, to: 9.5, minutes: 4 },
  eveningRush: { from: 16.5, to: 19, minutes: 5 },
  midday: { from: 12, to: 14, minutes: 1.5 },
  night: { from: 22, to: 5, minutes: -1.5 },
  weekendRushShare: 0.4,
  minutesPerKmFirst20: 0.25,
  minutesPerKmBeyond20: 0.15,
  /** Long planned trips accumulate small slips: share of planned minutes above 30. */
  durationShareAbove30: 0.05,
  minutesPerExtraActiveBooking: 1.5,
  driverLoadCap: 6,
  priority: { standard: 0, medical: -1, urgent: -2 },
  rainMinutesPerMmH: 1.2,
  rainCap: 6,
  snowMinutesPerMmH: 3,
  snowCap: 10,
  /** Wet roads at rush hour cost more than at night. */
  rushWeatherMultiplier: 1.5,
  lowVisibility: { belowMeters: 1000, minutes: 2 },
  strongWind: { aboveMetersPerSecond: 10, minutes: 1 },
  /** The heuristic's interval is a fixed asymmetric band (delays are right-skewed), nominally 80%. */
  interval: { lowFactor: 0.6, lowOffset: -1, highFactor: 1.5, highOffset: 2, level: 0.8 },
} as const;

const R = HEURISTIC_RULES;

function inWindow(hour: number, window: { from: number; to: number }): boolean {
  return window.from <= window.to
    ? hour >= window.from && hour < window.to
    : hour >= window.from || hour < window.to;
}

const round1 = (x: number) => Math.round(x * 10) / 10;

export function heuristicEstimate(f: BookingFeatures): PointEstimate {
  const factors: { factor: string; minutes: number }[] = [];
  const add = (factor: string, minutes: number) => {
    if (minutes !== 0) factors.push({ factor, minutes });
  };

  const rushShare = f.is_weekend ? R.weekendRushShare : 1;
  const morning = inWindow(f.hour_local, R.morningRush);
  const evening = inWindow(f.hour_local, R.eveningRush);
  const isRush = !f.is_weekend && (morning || evening);
  if (morning) add('rush_hour_morning', R.morningRush.minutes * rushShare);
  else if (evening) add('rush_hour_evening', R.eveningRush.minutes * rushShare);
  else if (inWindow(f.hour_local, R.midday)) add('midday_traffic', R.midday.minutes);
  else if (inWindow(f.hour_local, R.night)) add('night_light_traffic', R.night.minutes);

  const km = f.distance_km;
  add('distance', Math.min(km, 20) * R.minutesPerKmFirst20 + Math.max(km - 20, 0) * R.minutesPerKmBeyond20);
  if (f.estimated_duration_min !== null) {
    add('planned_duration', Math.max(f.estimated_duration_min - 30, 0) * R.durationShareAbove30);
  }
  add(
    'driver_load',
    Math.min(Math.max(f.driver_active_bookings - 1, 0) * R.minutesPerExtraActiveBooking, R.driverLoadCap),
  );
  add('priority', R.priority[f.priority]);

  if (f.weather) {
    const multiplier = isRush ? R.rushWeatherMultiplier : 1;
    add('rain', Math.min(f.weather.precipitation_mm_h * R.rainMinutesPerMmH, R.rainCap) * multiplier);
    add('snow', Math.min(f.weather.snow_mm_h * R.snowMinutesPerMmH, R.snowCap) * multiplier);
    if (f.weather.visibility_m < R.lowVisibility.belowMeters) add('low_visibility', R.lowVisibility.minutes);
    if (f.weather.wind_speed_m_s > R.strongWind.aboveMetersPerSecond)
      add('strong_wind', R.strongWind.minutes);
  }

  const raw = R.baseMinutes + factors.reduce((sum, x) => sum + x.minutes, 0);
  const delay = round1(Math.max(raw, 0));
  const floored = raw < 0 ? [floorFactor(round1(-raw))] : [];
  const i = R.interval;
  return {
    delay_minutes: delay,
    interval: {
      low: round1(Math.min(delay, Math.max(0, delay * i.lowFactor + i.lowOffset))),
      high: round1(Math.max(delay, delay * i.highFactor + i.highOffset)),
      level: i.level,
    },
    contributing_factors: factors
      .map((x) => ({
        factor: x.factor,
        minutes: round1(x.minutes),
        label: `${x.factor.replaceAll('_', ' ')}: ${x.minutes >= 0 ? '+' : ''}${x.minutes.toFixed(1)} min`,
      }))
      .sort((a, b) => Math.abs(b.minutes) - Math.abs(a.minutes))
      .concat(floored),
  };
}
