import { describe, expect, it } from 'vitest';
import { NEUTRAL_WEATHER } from '../domain/weather.js';
import { booking } from '../test-support/harness.js';
import {
  bookingFeatures,
  FEATURE_NAMES,
  FEATURE_SCHEMA,
  featureVector,
  IMPUTED_MINUTES_PER_KM,
  localTime,
} from './booking-features.js';

describe('localTime', () => {
  it('reads the wall-clock hour in the offset the booking was sent with', () => {
    expect(localTime('2026-11-25T08:15:00+01:00')).toEqual({ hour: 8.25, dayOfWeek: 3, month: 11 });
    expect(localTime('2026-11-25T07:15:00Z').hour).toBe(7.25);
    expect(localTime('2026-11-25T23:30:00-05:00')).toEqual({ hour: 23.5, dayOfWeek: 3, month: 11 });
  });
});

describe('feature edge cases', () => {
  it('reads midnight as hour 0 of the new day', () => {
    expect(localTime('2026-11-26T00:00:00+01:00')).toEqual({ hour: 0, dayOfWeek: 4, month: 11 });
    expect(localTime('2026-12-31T23:59:00+01:00').month).toBe(12);
    expect(localTime('2027-01-01T00:00:00+01:00').month).toBe(1);
  });

  it('keeps local hours across the daylight saving change', () => {
    // Paris, 29 March 2026: 02:00 +01:00 becomes 03:00 +02:00.
    expect(localTime('2026-03-29T01:30:00+01:00').hour).toBe(1.5);
    expect(localTime('2026-03-29T03:30:00+02:00').hour).toBe(3.5);
    expect(localTime('2026-10-25T02:30:00+02:00').hour).toBe(2.5);
    expect(localTime('2026-10-25T02:30:00+01:00').hour).toBe(2.5);
  });

  it('fills missing optional fields with documented values', () => {
    const features = bookingFeatures(booking() as never, null);
    const vector = featureVector(features, NEUTRAL_WEATHER);
    expect(vector).toHaveLength(FEATURE_NAMES.length);
    const at = (name: string) => vector[FEATURE_NAMES.indexOf(name as never)];
    expect(at('estimated_duration_min')).toBeCloseTo(features.distance_km * IMPUTED_MINUTES_PER_KM, 6);
    expect(at('driver_active_bookings')).toBe(0);
    expect(at('priority_code')).toBe(0);
    expect(at('precipitation_mm_h')).toBe(0);
    expect(at('visibility_km')).toBe(10);
  });
});

describe('feature vector', () => {
  it('follows FEATURE_SCHEMA and takes weather when given', () => {
    expect(FEATURE_NAMES).toEqual(FEATURE_SCHEMA.map((f) => f.name));
    const rainy = { ...NEUTRAL_WEATHER, precipitation_mm_h: 2.5, visibility_m: 1500 };
    const vector = featureVector(
      bookingFeatures(booking({ priority: 'urgent' }) as never, rainy),
      NEUTRAL_WEATHER,
    );
    const at = (name: string) => vector[FEATURE_NAMES.indexOf(name as never)];
    expect(at('precipitation_mm_h')).toBe(2.5);
    expect(at('visibility_km')).toBe(1.5);
    expect(at('priority_code')).toBe(2);
    expect(at('month')).toBe(11);
  });
});

describe('rain at rush hour', () => {
  const rainy = { ...NEUTRAL_WEATHER, precipitation_mm_h: 3 };
  const rainAtRush = (scheduled_at: string, weather = rainy) => {
    const vector = featureVector(
      bookingFeatures(booking({ scheduled_at }) as never, weather),
      NEUTRAL_WEATHER,
    );
    return vector[FEATURE_NAMES.indexOf('rain_at_rush_mm_h')];
  };

  it('is the rain rate in weekday rush hours, local time, and 0 outside them', () => {
    expect(rainAtRush('2026-11-25T07:00:00+01:00')).toBe(3);
    expect(rainAtRush('2026-11-25T09:29:00+01:00')).toBe(3);
    expect(rainAtRush('2026-11-25T09:30:00+01:00')).toBe(0);
    expect(rainAtRush('2026-11-25T16:29:00+01:00')).toBe(0);
    expect(rainAtRush('2026-11-25T15:30:00Z')).toBe(0);
    expect(rainAtRush('2026-11-25T18:00:00+01:00')).toBe(3);
    expect(rainAtRush('2026-11-25T19:30:00+01:00')).toBe(0);
    expect(rainAtRush('2026-11-28T08:15:00+01:00')).toBe(0);
  });

  it('is 0 when it is dry, or when no weather is known (neutral conditions)', () => {
    expect(rainAtRush('2026-11-25T08:15:00+01:00', NEUTRAL_WEATHER)).toBe(0);
    const vector = featureVector(
      bookingFeatures(booking({ scheduled_at: '2026-11-25T08:15:00+01:00' }) as never, null),
      NEUTRAL_WEATHER,
    );
    expect(vector[FEATURE_NAMES.indexOf('rain_at_rush_mm_h')]).toBe(0);
  });
});
