import { describe, expect, it } from 'vitest';
import { NEUTRAL_WEATHER, type WeatherConditions } from '../domain/weather.js';
import { bookingFeatures, haversineKm } from '../features/booking-features.js';
import { booking } from '../test-support/harness.js';
import { HEURISTIC_RULES, heuristicEstimate } from './heuristic.js';
import { confidenceOf, riskLevelOf } from './risk.js';

// 2026-11-25 is a Wednesday, 2026-11-28 a Saturday.
const at = (iso: string, extra: Record<string, unknown> = {}, weather: WeatherConditions | null = null) =>
  heuristicEstimate(
    bookingFeatures(booking({ scheduled_at: iso, distance_km: 8, ...extra }) as never, weather),
  );
const rain = (mm: number): WeatherConditions => ({ ...NEUTRAL_WEATHER, precipitation_mm_h: mm });

describe('heuristic', () => {
  it('puts rush hour above midday above night, on weekdays', () => {
    const evening = at('2026-11-25T17:30:00+01:00').delay_minutes;
    const morning = at('2026-11-25T08:00:00+01:00').delay_minutes;
    const midday = at('2026-11-25T12:30:00+01:00').delay_minutes;
    const afternoon = at('2026-11-25T15:00:00+01:00').delay_minutes;
    const night = at('2026-11-25T02:00:00+01:00').delay_minutes;
    expect(evening).toBeGreaterThan(morning);
    expect(morning).toBeGreaterThan(midday);
    expect(midday).toBeGreaterThan(afternoon);
    expect(afternoon).toBeGreaterThan(night);
  });

  it('softens rush hour at weekends', () => {
    expect(at('2026-11-28T17:30:00+01:00').delay_minutes).toBeLessThan(
      at('2026-11-25T17:30:00+01:00').delay_minutes,
    );
  });

  it('grows with distance, driver load and bad weather; shrinks with priority', () => {
    const base = at('2026-11-25T15:00:00+01:00').delay_minutes;
    expect(at('2026-11-25T15:00:00+01:00', { distance_km: 30 }).delay_minutes).toBeGreaterThan(base);
    expect(at('2026-11-25T15:00:00+01:00', { driver_active_bookings: 4 }).delay_minutes).toBeGreaterThan(
      base,
    );
    expect(at('2026-11-25T15:00:00+01:00', { priority: 'medical' }).delay_minutes).toBeLessThan(base);
    expect(at('2026-11-25T15:00:00+01:00', { priority: 'urgent' }).delay_minutes).toBeLessThan(
      at('2026-11-25T15:00:00+01:00', { priority: 'medical' }).delay_minutes,
    );
    expect(at('2026-11-25T15:00:00+01:00', {}, rain(3)).delay_minutes).toBeGreaterThan(base);
  });

  it('makes rain at rush hour cost more than the same rain at night', () => {
    const rushCost =
      at('2026-11-25T17:30:00+01:00', {}, rain(3)).delay_minutes -
      at('2026-11-25T17:30:00+01:00').delay_minutes;
    const nightCost =
      at('2026-11-25T02:00:00+01:00', {}, rain(3)).delay_minutes -
      at('2026-11-25T02:00:00+01:00').delay_minutes;
    expect(rushCost).toBeGreaterThan(nightCost);
    expect(nightCost).toBeGreaterThan(0);
  });

  it('estimates distance from coordinates when none is given', () => {
    const features = bookingFeatures(booking() as never, null);
    expect(features.distance_estimated).toBe(true);
    const straight = haversineKm({ lat: 48.8566, lon: 2.3522 }, { lat: 48.8867, lon: 2.3431 });
    expect(straight).toBeGreaterThan(3.2);
    expect(straight).toBeLessThan(3.5);
    expect(features.distance_km).toBeCloseTo(straight * 1.3, 6);
  });

  it('is additive: base plus contributions is the delay, and the interval holds it', () => {
    for (const iso of [
      '2026-11-25T08:00:00+01:00',
      '2026-11-25T13:00:00+01:00',
      '2026-11-28T18:00:00+01:00',
    ]) {
      const estimate = at(iso, { driver_active_bookings: 3, estimated_duration_min: 50 }, rain(2));
      const sum = estimate.contributing_factors.reduce<number>(
        (s, f) => s + f.minutes,
        HEURISTIC_RULES.baseMinutes,
      );
      expect(Math.abs(sum - estimate.delay_minutes)).toBeLessThanOrEqual(0.3);
      expect(estimate.interval.low).toBeLessThanOrEqual(estimate.delay_minutes);
      expect(estimate.interval.high).toBeGreaterThanOrEqual(estimate.delay_minutes);
      expect(estimate.interval.level).toBe(0.8);
    }
  });

  it('never predicts a negative delay, and its floor_at_zero factor keeps the sum equal to it', () => {
    const estimate = at('2026-11-25T03:00:00+01:00', { distance_km: 0, priority: 'urgent' });
    expect(estimate.delay_minutes).toBe(0);
    expect(estimate.interval.low).toBe(0);
    expect(estimate.contributing_factors.at(-1)).toMatchObject({ factor: 'floor_at_zero', minutes: 1.5 });
    const sum = estimate.contributing_factors.reduce<number>(
      (s, f) => s + f.minutes,
      HEURISTIC_RULES.baseMinutes,
    );
    expect(sum).toBeCloseTo(0, 6);
  });
});

describe('confidence and risk', () => {
  it('reads confidence from the interval width', () => {
    expect(confidenceOf({ low: 5, high: 5 })).toBe(1);
    expect(confidenceOf({ low: 0, high: 10 })).toBe(0.5);
    expect(confidenceOf({ low: 0, high: 30 })).toBe(0.25);
  });

  it('grades risk from the delay and the interval top', () => {
    expect(riskLevelOf(2, { high: 6 })).toBe('low');
    expect(riskLevelOf(5, { high: 8 })).toBe('medium');
    expect(riskLevelOf(3, { high: 12 })).toBe('medium');
    expect(riskLevelOf(15, { high: 20 })).toBe('high');
    expect(riskLevelOf(10, { high: 25 })).toBe('high');
  });
});
