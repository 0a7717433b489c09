import { describe, expect, it } from 'vitest';
import { FEATURE_NAMES } from './booking-features.js';
import { expectedShadowGap, monthOf, SHADOW_BASIS, shadowBasis, WEEK_HOURS, weekHourOf } from './moments.js';

const vectorWith = (values: Record<string, number>) => FEATURE_NAMES.map((name) => values[name] ?? 0);

describe('moments', () => {
  it('names the hour of the week and the month a booking falls in', () => {
    expect(weekHourOf(vectorWith({ hour_local: 8.99 }))).toBe('weekday 08');
    expect(weekHourOf(vectorWith({ hour_local: 23.5, is_weekend: 1 }))).toBe('weekend 23');
    expect(monthOf(vectorWith({ month: 7 }))).toBe('07');
    expect(WEEK_HOURS).toHaveLength(48);
  });

  it('builds one basis value per named term, with exactly one hour of the week and at most one month set', () => {
    const x = shadowBasis(
      vectorWith({ hour_local: 8.2, month: 3, precipitation_mm_h: 4, rain_at_rush_mm_h: 4 }),
    );
    expect(x).toHaveLength(SHADOW_BASIS.length);
    const on = (prefix: string) => SHADOW_BASIS.filter((name, k) => name.startsWith(prefix) && x[k] === 1);
    expect(on('hour_of_week=')).toEqual(['hour_of_week=weekday 08']);
    expect(on('month=')).toEqual(['month=03']);
    // January is the months' reference: no month term set.
    expect(
      shadowBasis(vectorWith({ month: 1 })).filter((v, k) => SHADOW_BASIS[k]?.startsWith('month=') && v),
    ).toEqual([]);
    expect(x[SHADOW_BASIS.indexOf('precipitation_sqrt')]).toBe(2);
    expect(x[SHADOW_BASIS.indexOf('driver_active_bookings_at_rush')]).toBe(0);
  });

  it('expects the gap as the basis times the coefficients', () => {
    const coefficients = SHADOW_BASIS.map((name) =>
      name === 'hour_of_week=weekday 08' ? 3 : name === 'precipitation_mm_h' ? 0.5 : 0,
    );
    const baseline = { basis: SHADOW_BASIS, coefficients };
    expect(expectedShadowGap(baseline, vectorWith({ hour_local: 8.5, precipitation_mm_h: 2 }))).toBeCloseTo(
      4,
      9,
    );
    expect(expectedShadowGap(baseline, vectorWith({ hour_local: 12, precipitation_mm_h: 2 }))).toBeCloseTo(
      1,
      9,
    );
  });

  it('reads the expected gap without the one-hot part exactly as the whole basis times the coefficients', () => {
    let seed = 7;
    const random = () => {
      seed = (seed * 16807) % 2147483647;
      return seed / 2147483647;
    };
    const baseline = { basis: SHADOW_BASIS, coefficients: SHADOW_BASIS.map(() => random() * 4 - 2) };
    for (let i = 0; i < 200; i++) {
      const vector = vectorWith({
        hour_local: random() * 24,
        is_weekend: random() < 0.3 ? 1 : 0,
        month: 1 + Math.floor(random() * 12),
        distance_km: random() * 40,
        estimated_duration_min: random() * 90,
        driver_active_bookings: Math.floor(random() * 6),
        priority_code: Math.floor(random() * 3),
        temperature_c: random() * 40 - 10,
        precipitation_mm_h: random() < 0.5 ? 0 : random() * 10,
        snow_mm_h: random() < 0.8 ? 0 : random() * 3,
        wind_speed_m_s: random() * 15,
        visibility_km: random() * 10,
        rain_at_rush_mm_h: random() < 0.7 ? 0 : random() * 10,
      });
      const dense = shadowBasis(vector).reduce(
        (sum, x, k) => sum + x * (baseline.coefficients[k] as number),
        0,
      );
      expect(expectedShadowGap(baseline, vector)).toBeCloseTo(dense, 9);
    }
  });
});
