import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { generateBookings, parisOffsetHours, WORLDS } from './generator.js';
import { daysOf, findDay, generateTraffic, type TimedBooking } from './traffic.js';

const MINUTE_MS = 60_000;
const HOUR_MS = 3_600_000;
/** Weather by local date and hour of the bookings due then ("2025-01-15T08"), checking they share it. */
const weatherByHour = (rows: TimedBooking[]) => {
  const byHour = new Map<string, Set<string>>();
  for (const r of rows) {
    const key = r.booking.scheduled_at.slice(0, 13);
    byHour.set(key, (byHour.get(key) ?? new Set()).add(JSON.stringify(r.weather)));
  }
  expect([...byHour].filter(([, weathers]) => weathers.size > 1).map(([key]) => key)).toEqual([]);
  return new Map([...byHour].map(([key, weathers]) => [key, [...weathers][0]]));
};

describe('generateBookings after the traffic mode shares its code', () => {
  it('draws the same bytes as before, which the committed card hashes', () => {
    const sha = (x: unknown) => createHash('sha256').update(JSON.stringify(x)).digest('hex');
    expect(sha(generateBookings({ seed: 42, count: 2000 }))).toBe(
      'f4501ebb46d6fe30ec0ff55652bbd97b52cb4c988dc8ba2c5f4725f6e55506c4',
    );
    expect(sha(generateBookings({ seed: 42, count: 2000, world: WORLDS.hard }))).toBe(
      '800a2093b5db0f5c38c5476c374413c557e516ff1baa1815a307b7d1d1033631',
    );
  });
});

describe('traffic in time order', () => {
  // A Wednesday in winter (+01:00), a whole day at 1 prediction per second on average.
  const start = Date.parse('2025-01-15T00:00:00+01:00');
  const day = generateTraffic({ seed: 1, startDay: '2025-01-15', hours: 24, perSecond: 1 });

  it('is sorted by request time, inside the window, a lead time before each booking is due', () => {
    expect(day.every((r) => r.requested_at_ms >= start && r.requested_at_ms < start + 24 * HOUR_MS)).toBe(
      true,
    );
    expect(
      day.every((r, i) => i === 0 || (day[i - 1] as TimedBooking).requested_at_ms <= r.requested_at_ms),
    ).toBe(true);
    expect(day.every((r, i) => r.booking.booking_id === `tr-1-${i}`)).toBe(true);
    const leads = day.map((r) => (Date.parse(r.booking.scheduled_at) - r.requested_at_ms) / MINUTE_MS);
    expect(Math.min(...leads)).toBeGreaterThanOrEqual(10);
    expect(Math.max(...leads)).toBeLessThanOrEqual(120);
    expect(leads.reduce((s, x) => s + x, 0) / leads.length).toBeCloseTo(30, 0);
  });

  it('has a daily mean rate of perSecond, and hourly rates that follow the demand curve', () => {
    expect(day.length / 86_400).toBeGreaterThan(0.95);
    expect(day.length / 86_400).toBeLessThan(1.05);
    const requestedIn = (hour: number) =>
      day.filter((r) => new Date(r.requested_at_ms + HOUR_MS).getUTCHours() === hour).length;
    expect(requestedIn(8)).toBeGreaterThan(4 * requestedIn(3));
    expect(requestedIn(17)).toBeGreaterThan(4 * requestedIn(3));
    expect(requestedIn(8)).toBeGreaterThan(1.2 * requestedIn(11));
  });

  it('gives all bookings due in one hour that hour’s weather, drawn per hour', () => {
    const byHour = weatherByHour(day);
    expect(byHour.size).toBeGreaterThanOrEqual(24);
    expect(new Set(byHour.values()).size).toBe(byHour.size);
  });

  it('sees the day weather daysOf tells: no rain on a dry day, showers in some hours of a wet one', async () => {
    const { BookingSchema } = await import('../service/predictions/schemas.js');
    const days = daysOf({ seed: 2 });
    const rainyHours = (date: string) => {
      const rows = generateTraffic({ seed: 2, startDay: date, hours: 24, perSecond: 0.1 }).filter((r) =>
        r.booking.scheduled_at.startsWith(date),
      );
      for (const r of rows.slice(0, 200)) BookingSchema.parse(r.booking);
      const hours = (xs: TimedBooking[]) => new Set(xs.map((r) => r.booking.scheduled_at.slice(11, 13))).size;
      return {
        hours: hours(rows),
        rainy: hours(rows.filter((r) => r.weather.precipitation_mm_h + r.weather.snow_mm_h > 0)),
      };
    };
    const dry = rainyHours(findDay(days, { month: 1, wet: false }).date);
    expect(dry.hours).toBe(24);
    expect(dry.rainy).toBe(0);
    const wet = rainyHours(findDay(days, { month: 1, wet: true }).date);
    expect(wet.rainy).toBeGreaterThan(2);
    expect(wet.rainy).toBeLessThan(22);
  });

  it('is the same for the same seed, and two overlapping windows see the same weather', () => {
    // Across the night clocks go forward (30 March 2025, 02:00 -> 03:00).
    const window = { seed: 5, startDay: '2025-03-29', startHour: 20, hours: 12, perSecond: 0.2 };
    const a = generateTraffic(window);
    expect(generateTraffic(window)).toEqual(a);
    expect(generateTraffic({ ...window, seed: 6 })).not.toEqual(a);
    const b = generateTraffic({ ...window, startDay: '2025-03-30', startHour: 4, hours: 30 });
    const [wa, wb] = [weatherByHour(a), weatherByHour(b)];
    const shared = [...wa.keys()].filter((key) => wb.has(key));
    expect(shared.length).toBe(7); // due 04:00-10:59, the first window's requests ending at 09:00
    for (const key of shared) expect(wb.get(key), key).toBe(wa.get(key));
    const offsetRight = (r: TimedBooking) =>
      r.booking.scheduled_at.endsWith(
        `+0${parisOffsetHours(new Date(Date.parse(r.booking.scheduled_at)))}:00`,
      );
    expect([...a, ...b].every(offsetRight)).toBe(true);
    expect(a.some((r) => r.booking.scheduled_at.startsWith('2025-03-30T01'))).toBe(true);
    expect(a.some((r) => r.booking.scheduled_at.startsWith('2025-03-30T02'))).toBe(false);
  });

  it('keeps the bookings and weather in the hard world, where only the delays change', () => {
    const window = { seed: 3, startDay: '2025-02-04', startHour: 7, hours: 3, perSecond: 0.5 };
    const base = generateTraffic(window);
    const hard = generateTraffic({ ...window, world: WORLDS.hard });
    expect(hard.map((r) => [r.booking, r.weather, r.requested_at_ms])).toEqual(
      base.map((r) => [r.booking, r.weather, r.requested_at_ms]),
    );
    expect(hard.filter((r) => r.incident_minutes > 0).length).toBeGreaterThan(0);
  });

  it('refuses a window it cannot fill from the year', () => {
    expect(() => generateTraffic({ seed: 1, startDay: '2025-02-30', hours: 1, perSecond: 1 })).toThrow(
      RangeError,
    );
    expect(() =>
      generateTraffic({ seed: 1, startDay: '2025-12-31', startHour: 22, hours: 1, perSecond: 1 }),
    ).toThrow(RangeError);
  });
});

describe('findDay', () => {
  const days = daysOf({ seed: 1, year: 2025 });

  it('finds the first day of a month with the weekday and weather asked for', () => {
    const want = { month: 1, weekdays: [4], wet: true };
    const found = findDay(days, want);
    expect(found).toMatchObject({ month: 1, weekday: 4, wet: true });
    expect(found.date.slice(0, 7)).toBe('2025-01');
    const earlier = days.filter((d) => d.date < found.date);
    expect(earlier.some((d) => d.month === 1 && d.weekday === 4 && d.wet)).toBe(false);
    expect(findDay(days, { month: 7, weekdays: [3], wet: false })).toMatchObject({
      month: 7,
      weekday: 3,
      wet: false,
    });
  });

  it('is the chain generateBookings draws: its dry days have no rain in its bookings', () => {
    const dry = new Set(days.filter((d) => !d.wet).map((d) => d.date));
    const rows = generateBookings({ seed: 1, count: 5000 });
    const onDry = rows.filter((r) => dry.has(r.booking.scheduled_at.slice(0, 10)));
    expect(onDry.length).toBeGreaterThan(2000);
    expect(onDry.every((r) => r.weather.precipitation_mm_h + r.weather.snow_mm_h === 0)).toBe(true);
    expect(rows.some((r) => r.weather.precipitation_mm_h > 0)).toBe(true);
  });

  it('throws when no day fits', () => {
    expect(() => findDay(days, { month: 2, weekdays: [7] })).toThrow(/no day/);
    expect(() => findDay(days, { month: 13 })).toThrow(/no day/);
  });
});
