import { describe, expect, it } from 'vitest';
import { NEUTRAL_WEATHER } from '../service/domain/weather.js';
import { datasetCsv } from './dataset.js';
import { generateBookings, medianDelay, parisOffsetHours, WORLDS } from './generator.js';

describe('the booking generator', () => {
  it('is deterministic: same seed, same bookings; another seed, others', () => {
    const a = datasetCsv(generateBookings({ seed: 7, count: 500 }));
    const b = datasetCsv(generateBookings({ seed: 7, count: 500 }));
    const c = datasetCsv(generateBookings({ seed: 8, count: 500 }));
    expect(a.sha256).toBe(b.sha256);
    expect(c.sha256).not.toBe(a.sha256);
  });

  it('emits bookings the API accepts, with Paris offsets that follow daylight saving time', async () => {
    const { BookingSchema } = await import('../service/predictions/schemas.js');
    const rows = generateBookings({ seed: 1, count: 2000 });
    for (const row of rows) BookingSchema.parse(row.booking);
    const offsets = new Set(rows.map((r) => r.booking.scheduled_at.slice(-6)));
    expect(offsets).toEqual(new Set(['+01:00', '+02:00']));
    expect(parisOffsetHours(new Date('2025-03-30T00:59:00Z'))).toBe(1);
    expect(parisOffsetHours(new Date('2025-03-30T01:00:00Z'))).toBe(2);
    expect(parisOffsetHours(new Date('2025-10-26T00:59:00Z'))).toBe(2);
    expect(parisOffsetHours(new Date('2025-10-26T01:00:00Z'))).toBe(1);
  });

  it('has a realistic year: rush-hour peaks, wet winters, snow only in the cold', () => {
    const rows = generateBookings({ seed: 3, count: 20_000 });
    const hourOf = (r: (typeof rows)[number]) => Number(r.booking.scheduled_at.slice(11, 13));
    const at = (h: number) => rows.filter((r) => hourOf(r) === h).length;
    expect(at(8)).toBeGreaterThan(1.4 * at(11));
    expect(at(17)).toBeGreaterThan(2 * at(3));
    const month = (r: (typeof rows)[number]) => Number(r.booking.scheduled_at.slice(5, 7));
    const wetShare = (months: number[]) => {
      const inMonths = rows.filter((r) => months.includes(month(r)));
      return (
        inMonths.filter((r) => r.weather.precipitation_mm_h + r.weather.snow_mm_h > 0).length /
        inMonths.length
      );
    };
    expect(wetShare([12, 1, 2])).toBeGreaterThan(wetShare([6, 7, 8]));
    for (const r of rows.filter((x) => x.weather.snow_mm_h > 0))
      expect(r.weather.temperature_c).toBeLessThan(0.5);
  });

  it('makes rain at rush hour hurt more than the same rain at night', () => {
    const trip = {
      weekday: 3,
      dayOfYear: 100,
      distanceKm: 8,
      plannedMin: 25,
      load: 1,
      priority: 'standard' as const,
    };
    const rain = { ...NEUTRAL_WEATHER, precipitation_mm_h: 3, condition_code: 501 };
    const cost = (hour: number) =>
      medianDelay({ ...trip, hour, weather: rain }) -
      medianDelay({ ...trip, hour, weather: NEUTRAL_WEATHER });
    expect(cost(17.75)).toBeGreaterThan(1.8 * cost(2));
  });

  it('writes a noise-free median the actual delays scatter around', () => {
    const rows = generateBookings({ seed: 5, count: 20_000 });
    const above = rows.filter((r) => r.actual_delay_minutes > r.median_delay_minutes).length / rows.length;
    expect(above).toBeGreaterThan(0.48);
    expect(above).toBeLessThan(0.52);
  });

  it('changes only what a season names: the same bookings, longer trips, more rain, a later rush', () => {
    const base = generateBookings({ seed: 9, count: 5000 });
    const mean = (xs: number[]) => xs.reduce((s, x) => s + x, 0) / xs.length;
    const distance = (rows: typeof base) => mean(rows.map((r) => r.booking.distance_km ?? 0));
    const wet = (rows: typeof base) =>
      rows.filter((r) => r.weather.precipitation_mm_h > 0).length / rows.length;

    const trips = generateBookings({ seed: 9, count: 5000, season: { tripFactor: 1.5 } });
    expect(trips.map((r) => r.booking.priority)).toEqual(base.map((r) => r.booking.priority));
    expect(distance(trips) / distance(base)).toBeCloseTo(1.5, 1);

    const rain = generateBookings({ seed: 9, count: 5000, season: { rainFactor: 2 } });
    expect(wet(rain)).toBeGreaterThan(2 * wet(base));

    const later = generateBookings({ seed: 9, count: 5000, season: { rushShiftHours: 2 } });
    const at = (rows: typeof base, h: number) =>
      rows.filter((r) => Number(r.booking.scheduled_at.slice(11, 13)) === h).length;
    expect(at(later, 10)).toBeGreaterThan(1.3 * at(base, 10));
    expect(at(later, 8)).toBeLessThan(at(base, 8));
  });
});

describe('the hard world', () => {
  const base = generateBookings({ seed: 11, count: 20_000 });
  const hard = generateBookings({ seed: 11, count: 20_000, world: WORLDS.hard });

  it('keeps the bookings and their conditions: only the delays change', () => {
    expect(hard.map((r) => r.booking)).toEqual(base.map((r) => r.booking));
    expect(hard.map((r) => r.weather)).toEqual(base.map((r) => r.weather));
    expect(base.every((r) => r.incident_minutes === 0)).toBe(true);
  });

  it('has incidents that hit many bookings at once, most at rush hour, with a right-skewed cost', () => {
    const hit = hard.filter((r) => r.incident_minutes > 0);
    expect(hit.length / hard.length).toBeGreaterThan(0.05);
    const hour = (r: (typeof hard)[number]) => Number(r.booking.scheduled_at.slice(11, 13));
    const rush = (r: (typeof hard)[number]) => [7, 8, 17, 18].includes(hour(r));
    const share = (rows: typeof hard) => rows.filter((r) => r.incident_minutes > 0).length / rows.length;
    expect(share(hard.filter(rush))).toBeGreaterThan(1.5 * share(hard.filter((r) => !rush(r))));
    // Same day, same hour, within a few kilometres: one incident, many bookings.
    const byDayHour = new Map<string, number>();
    for (const r of hit) {
      const key = r.booking.scheduled_at.slice(0, 13);
      byDayHour.set(key, (byDayHour.get(key) ?? 0) + 1);
    }
    expect(Math.max(...byDayHour.values())).toBeGreaterThanOrEqual(5);
    const costs = hit.map((r) => r.incident_minutes).sort((a, b) => a - b);
    const median = costs[Math.floor(costs.length / 2)] as number;
    const mean = costs.reduce((s, x) => s + x, 0) / costs.length;
    expect(mean).toBeGreaterThan(1.15 * median);
    expect(costs.at(-1)).toBeGreaterThan(8 * median);
  });

  it('has heavier-tailed noise around its median, with an oracle interval that still holds 80%', () => {
    const tail = (rows: typeof hard) =>
      rows.filter(
        (r) =>
          Math.abs(r.actual_delay_minutes - r.median_delay_minutes) >
          4 * (0.5 + 0.15 * r.median_delay_minutes),
      ).length / rows.length;
    expect(tail(hard)).toBeGreaterThan(5 * tail(base));
    for (const rows of [base, hard]) {
      const inside = rows.filter(
        (r) =>
          r.actual_delay_minutes >= r.oracle_interval.low && r.actual_delay_minutes <= r.oracle_interval.high,
      ).length;
      expect(inside / rows.length).toBeGreaterThan(0.79);
      expect(inside / rows.length).toBeLessThan(0.815);
    }
  });
});
