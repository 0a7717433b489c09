import type { WeatherConditions } from '../service/domain/weather.js';
import {
  daysIn,
  demandDensity,
  drawBooking,
  drawDayWeather,
  drawWeather,
  exponential,
  isoWithOffset,
  parisOffsetHours,
  type RawBooking,
  rngFrom,
  type Season,
  WORLDS,
  type World,
  worldDraws,
} from './generator.js';

/**
 * Traffic in time order, for replaying alerting: consecutive days from generateBookings' year, bookings
 * requested as they would arrive. The generative choices are in models/README.md ("Traffic in time order").
 */
export interface TimedBooking extends RawBooking {
  /** When the prediction is asked (epoch ms, UTC): some lead time before the booking is due. */
  requested_at_ms: number;
}

export interface DayInfo {
  /** Local YYYY-MM-DD. */
  date: string;
  /** 0 Sunday. */
  weekday: number;
  wet: boolean;
  temperatureMean: number;
  /** 1 for January. */
  month: number;
}

const MINUTE_MS = 60_000;
const HOUR_MS = 3_600_000;
const DAY_MS = 86_400_000;
const MAX_LEAD_MS = 120 * MINUTE_MS;
// Offsets of this mode's own streams from the seed, apart from generateBookings' (the seed itself, whose
// first draws are the day weather, and the hard world's at +1_000_003 and +2_000_003).
const ARRIVAL_STREAM = 3_000_003;
const HOUR_WEATHER_STREAM = 4_000_003;
const BOOKING_STREAM = 5_000_003;

/** The year's days as the generator's weather chain draws them for this seed (same chain as generateBookings(seed)'s). */
export function daysOf({ seed, year = 2025, season = {} }: { seed: number; year?: number; season?: Season }) {
  return drawDayWeather(rngFrom(seed), daysIn(year), season.rainFactor ?? 1).map((w, day): DayInfo => {
    const date = new Date(Date.UTC(year, 0, 1 + day));
    return {
      date: date.toISOString().slice(0, 10),
      weekday: date.getUTCDay(),
      wet: w.wet,
      temperatureMean: w.temperatureMean,
      month: date.getUTCMonth() + 1,
    };
  });
}

/** Picks the first day (from a given month, optional weekday set, wet or dry) of daysOf; throws when none. */
export function findDay(
  days: DayInfo[],
  want: { month: number; weekdays?: number[]; wet?: boolean },
): DayInfo {
  const found = days.find(
    (d) =>
      d.month === want.month &&
      (want.weekdays === undefined || want.weekdays.includes(d.weekday)) &&
      (want.wet === undefined || d.wet === want.wet),
  );
  if (!found) throw new Error(`no day matches ${JSON.stringify(want)}`);
  return found;
}

/** Local wall-clock time (as if UTC) of an instant in Paris. */
const localOf = (utcMs: number) => utcMs + parisOffsetHours(new Date(utcMs)) * HOUR_MS;

/**
 * The days alerting is measured on (measure:rollback, measure:drift-alert), from the weather chain of `seed`: a wet
 * winter weekday, a dry summer weekday and a dry spring weekend day.
 */
export function daysThatMatter(seed: number) {
  const days = daysOf({ seed });
  return {
    wetWinterWeekday: findDay(days, { month: 1, weekdays: [4], wet: true }),
    drySummerWeekday: findDay(days, { month: 7, weekdays: [3], wet: false }),
    dryWeekendDay: findDay(days, { month: 4, weekdays: [6], wet: false }),
  };
}

/** The demand curve's mean over 24 h: what turns a daily mean rate into the rate at each moment. */
function meanDensity(rushShiftHours: number): number {
  // Minute midpoints: the curve's steps (05:30, 23:30) fall on minutes, its bumps are smooth.
  let sum = 0;
  for (let m = 0; m < 1440; m++) sum += demandDensity((m + 0.5) / 60, rushShiftHours);
  return sum / 1440;
}

export function generateTraffic({
  seed,
  startDay,
  startHour = 0,
  hours,
  perSecond,
  season = {},
  world = WORLDS.default,
}: {
  seed: number;
  /** Local (Paris) date of the first day, YYYY-MM-DD; its year is the generator year. */
  startDay: string;
  /** Local hour of day at which the traffic starts (default 0). */
  startHour?: number;
  /** How long, in hours (may span several days, fractional allowed). */
  hours: number;
  /** Mean predictions per second over a whole day; the rate at each moment follows the demand curve. */
  perSecond: number;
  season?: Season;
  world?: World;
}): TimedBooking[] {
  const [, y, m, d] = /^(\d{4})-(\d{2})-(\d{2})$/.exec(startDay) ?? [];
  const year = Number(y);
  const localMidnight = Date.UTC(year, Number(m) - 1, Number(d));
  if (!y || new Date(localMidnight).toISOString().slice(0, 10) !== startDay)
    throw new RangeError(`startDay must be a date YYYY-MM-DD, not ${startDay}`);
  if (!(startHour >= 0 && startHour < 24))
    throw new RangeError(`startHour must be in [0, 24), not ${startHour}`);
  if (!(hours > 0) || !(perSecond > 0)) throw new RangeError('hours and perSecond must be positive');
  const yearStart = Date.UTC(year, 0, 1);
  const start = utcOfLocal(startDay, startHour);
  const end = start + hours * HOUR_MS;
  // Requests up to the end are for bookings due up to two hours later: those days need the year's weather.
  if (localOf(end + MAX_LEAD_MS) > Date.UTC(year + 1, 0, 1))
    throw new RangeError(`traffic from ${startDay} must end two hours before the end of ${year}`);

  const { rainFactor = 1, rushShiftHours = 0 } = season;
  const dayWeather = drawDayWeather(rngFrom(seed), daysIn(year), rainFactor);
  // One draw per (day, local hour) from the start of the year: any window of a seed sees the same hours.
  const lastDay = Math.floor((localOf(end + MAX_LEAD_MS) - yearStart) / DAY_MS);
  const hourRng = rngFrom(seed + HOUR_WEATHER_STREAM);
  const hourWeather = dayWeather
    .slice(0, lastDay + 1)
    .flatMap((dw) => Array.from({ length: 24 }, (_, h) => drawWeather(hourRng, dw, h + 0.5, rainFactor)));

  // Due times: an inhomogeneous Poisson process by thinning a homogeneous one at the curve's peak (1), from
  // the window's start to two hours (the longest lead) past its end, so that the window is full.
  // Arrivals and bookings are drawn for this window: keyed by its start too, so that two days of one seed are two
  // days of traffic, not the same one twice.
  const windowKey = Math.round(start / MINUTE_MS) % 1_000_000_007;
  const arrivals = rngFrom(seed + ARRIVAL_STREAM + windowKey);
  const meanGapMs = (1000 * meanDensity(rushShiftHours)) / perSecond;
  const due: { scheduledMs: number; requestedMs: number }[] = [];
  for (
    let t = start + exponential(arrivals, meanGapMs);
    t < end + MAX_LEAD_MS;
    t += exponential(arrivals, meanGapMs)
  ) {
    if (arrivals() >= demandDensity((localOf(t) % DAY_MS) / HOUR_MS, rushShiftHours)) continue;
    // Bookings are due on the minute, as generateBookings' are; the prediction is asked 10 min + an
    // exponential 20 min before, at most two hours.
    const scheduledMs = Math.round(t / MINUTE_MS) * MINUTE_MS;
    const leadMs = Math.min(10 + exponential(arrivals, 20), 120) * MINUTE_MS;
    const requestedMs = Math.round(scheduledMs - leadMs);
    if (requestedMs >= start && requestedMs < end) due.push({ scheduledMs, requestedMs });
  }
  due.sort((a, b) => a.requestedMs - b.requestedMs);

  const rng = rngFrom(seed + BOOKING_STREAM + windowKey);
  const draws = worldDraws(seed, year, world);
  return due.map(({ scheduledMs, requestedMs }, i) => {
    const local = localOf(scheduledMs);
    const day = Math.floor((local - yearStart) / DAY_MS);
    const localHour = (local % DAY_MS) / HOUR_MS;
    const weather = hourWeather[day * 24 + Math.floor(localHour)] as WeatherConditions;
    const slot = {
      id: `tr-${seed}-${i}`,
      day,
      weekday: new Date(local).getUTCDay(),
      localHour,
      scheduledAt: isoWithOffset(new Date(scheduledMs), parisOffsetHours(new Date(scheduledMs))),
    };
    return {
      ...drawBooking(rng, slot, () => weather, { season, world, draws }),
      requested_at_ms: requestedMs,
    };
  });
}

/** The UTC moment (epoch ms) of a local Paris day and hour, by generateBookings' local-to-UTC rule: where a window starts. */
export function utcOfLocal(day: string, hour: number): number {
  const localStart = Date.parse(`${day}T00:00:00Z`) + hour * HOUR_MS;
  return localStart - parisOffsetHours(new Date(localStart - HOUR_MS)) * HOUR_MS;
}
