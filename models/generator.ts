import { uniformFloat64 } from 'pure-rand/distribution/uniformFloat64';
import { xoroshiro128plus } from 'pure-rand/generator/xoroshiro128plus';
import type { Booking } from '../service/domain/booking.js';
import type { WeatherConditions } from '../service/domain/weather.js';

/**
 * Synthetic bookings over one year in one city (Paris), with weather and actual delays. The generative
 * process is documented in models/README.md; every constant below is named there. Same seed, same data.
 */
export interface RawBooking {
  booking: Booking;
  weather: WeatherConditions;
  /** The noise-free conditional median of the delay: the best any predictor can do in MAE. */
  median_delay_minutes: number;
  /** The oracle's 80% interval around that median: where 80% of actual delays fall. */
  oracle_interval: { low: number; high: number };
  /** What traffic incidents added to the median (0 in the default world, which has none). */
  incident_minutes: number;
  actual_delay_minutes: number;
}

/**
 * How hard the world is. The default world has normal noise and no incidents; the hard one adds what real
 * delays have and the default lacks: incidents that hit many bookings at once in space and time (most at rush
 * hour, right-skewed in their cost) and heavy-tailed noise (Student-t with 3 degrees of freedom, the same
 * standard deviation). Its extra draws come from their own random streams: the default world's bytes never
 * depend on them.
 */
export interface World {
  incidents: boolean;
  noise: 'normal' | 'student_t3';
}
export const WORLDS = {
  default: { incidents: false, noise: 'normal' },
  hard: { incidents: true, noise: 'student_t3' },
} as const satisfies Record<string, World>;
export type WorldName = keyof typeof WORLDS;

const CENTER = { lat: 48.8566, lon: 2.3522 };
const KM_PER_DEG_LAT = 111.32;

export type Rng = () => number;

export function rngFrom(seed: number): Rng {
  const generator = xoroshiro128plus(seed);
  return () => uniformFloat64(generator);
}

const normal = (rng: Rng) => {
  // Box-Muller; 1 - u keeps the logarithm finite.
  const u = 1 - rng();
  const v = rng();
  return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v);
};
export const exponential = (rng: Rng, mean: number) => -Math.log(1 - rng()) * mean;
const poisson = (rng: Rng, lambda: number) => {
  let k = 0;
  let p = Math.exp(-lambda);
  let cumulative = p;
  const u = rng();
  while (u > cumulative && k < 12) {
    k += 1;
    p *= lambda / k;
    cumulative += p;
  }
  return k;
};
const bump = (x: number, center: number, width: number) => Math.exp(-(((x - center) / width) ** 2) / 2);

/** Weekday rush intensity in 0..1 at a local hour (morning 08:15, evening 17:45). */
export function rushness(hour: number, weekend: boolean): number {
  const weekday = Math.max(bump(hour, 8.25, 1.0), bump(hour, 17.75, 1.2));
  return weekend ? 0.35 * weekday : weekday;
}

/** Paris offset from UTC in hours: +2 from the last Sunday of March to the last Sunday of October, 01:00 UTC. */
export function parisOffsetHours(utc: Date): number {
  const year = utc.getUTCFullYear();
  const lastSunday = (month: number) => {
    const d = new Date(Date.UTC(year, month + 1, 0, 1));
    d.setUTCDate(d.getUTCDate() - d.getUTCDay());
    return d.getTime();
  };
  const t = utc.getTime();
  return t >= lastSunday(2) && t < lastSunday(9) ? 2 : 1;
}

export function isoWithOffset(utc: Date, offsetHours: number): string {
  const local = new Date(utc.getTime() + offsetHours * 3_600_000);
  return `${local.toISOString().slice(0, 19)}+0${offsetHours}:00`;
}

export interface DayWeather {
  wet: boolean;
  temperatureMean: number;
  windBase: number;
}

export const daysIn = (year: number) => (Date.UTC(year + 1, 0, 1) - Date.UTC(year, 0, 1)) / 86_400_000;

/** The year's weather, day by day, as the first draws of a stream (generateBookings' own, for its seed). */
export function drawDayWeather(rng: Rng, days: number, rainFactor: number): DayWeather[] {
  const dayWeather: DayWeather[] = [];
  let wet = false;
  for (let d = 0; d < days; d++) {
    const winterness = Math.cos((2 * Math.PI * (d - 15)) / days); // 1 mid-January, -1 mid-July
    const pWet = Math.min(0.9, (0.3 + 0.1 * winterness) * rainFactor);
    // Wet and dry spells persist: a Markov chain with the seasonal probability as its stationary share.
    wet = rng() < (wet ? pWet + 0.35 * (1 - pWet) : pWet * 0.65);
    dayWeather.push({
      wet,
      temperatureMean: 12.5 - 8.5 * winterness + 3 * normal(rng),
      windBase: 3 + 1.5 * Math.max(winterness, 0) + exponential(rng, 1.5),
    });
  }
  return dayWeather;
}

/** Demand at a local hour, relative to its peak (1): a floor plus morning and evening peaks, few at night. */
export function demandDensity(hour: number, rushShiftHours: number): number {
  const clock = hour - rushShiftHours;
  return hour > 5.5 && hour < 23.5
    ? 0.25 + 0.75 * Math.max(bump(clock, 8.25, 1.5), bump(clock, 17.75, 1.8), 0.6 * bump(clock, 13, 2.5))
    : 0.15;
}

/**
 * The structural effect (the conditional median of the delay), documented in models/README.md ("Delay").
 * The old rules (the heuristic) got its shape partly wrong, as rules written years ago do: distance and
 * driver load cost more than they assume, medical pickups are slower, not faster, and weather hurts more.
 */
export function medianDelay(input: {
  /** Local hour, moved back by the season's rush-hour shift when there is one: the clock the traffic follows. */
  hour: number;
  weekday: number;
  dayOfYear: number;
  distanceKm: number;
  plannedMin: number;
  load: number;
  priority: 'standard' | 'medical' | 'urgent';
  weather: WeatherConditions;
}): number {
  const weekend = input.weekday === 0 || input.weekday === 6;
  const rush = rushness(input.hour, weekend);
  const w = input.weather;
  const traffic = weekend
    ? 1.5 * bump(input.hour, 13.5, 2.5) + 2 * bump(input.hour, 18, 2)
    : 5.5 * (input.weekday === 1 ? 1.2 : 1) * bump(input.hour, 8.25, 1.0) +
      7.5 * (input.weekday === 5 ? 1.3 : 1) * bump(input.hour, 17.5, 1.4);
  const effects =
    1 +
    traffic +
    1.5 * bump(input.dayOfYear, 350, 10) -
    1 * bump(input.dayOfYear, 220, 12) +
    0.55 * input.distanceKm ** 0.9 +
    0.03 * Math.max(input.plannedMin - 25, 0) +
    0.6 * input.load ** 1.6 * (1 + 0.5 * rush) +
    { standard: 0, medical: 1.2, urgent: -1.5 }[input.priority] +
    2 * Math.min(w.precipitation_mm_h, 8) ** 0.8 * (1 + 1.5 * rush) +
    5 * Math.min(w.snow_mm_h, 5) ** 0.7 * (1 + rush) +
    3 * Math.max(0, 1 - w.visibility_m / 2000) +
    0.2 * Math.max(w.wind_speed_m_s - 8, 0) +
    0.1 * Math.max(-w.temperature_c, 0);
  return Math.max(effects, 0.3);
}

/** Heteroscedastic noise: longer expected delays are less certain. */
export const noiseSd = (median: number) => 0.5 + 0.15 * median;

/** z such that P(|N(0,1)| <= z) = 0.8, and the same for Student-t with 3 degrees of freedom. */
const Z_80 = 1.2815515655446004;
const T3_80 = 1.6377443536962102;
/** Student-t(3) has variance 3: this scale gives it the normal noise's standard deviation. */
const T3_SCALE = 1 / Math.sqrt(3);

/** A traffic incident: a disc of the city, for a while, adding up to `minutes` at its centre. */
interface Incident {
  day: number;
  startHour: number;
  endHour: number;
  lat: number;
  lon: number;
  radiusKm: number;
  minutes: number;
}

/**
 * Incidents of a year: Poisson per day (6 on weekdays, 3 at weekends), starting mostly at rush hour, lasting
 * 30 min + an exponential 60 min, centred around the city centre (half-normal radius 4 km) with a radius of
 * 1.5 km + an exponential 1.5 km, and a log-normal cost at the centre (median 4 min, sigma 0.9: a few cost
 * 20 min and more) that falls linearly to 0 at the edge.
 */
function drawIncidents(rng: Rng, year: number, days: number): Incident[] {
  const incidents: Incident[] = [];
  for (let day = 0; day < days; day++) {
    const weekday = new Date(Date.UTC(year, 0, 1 + day)).getUTCDay();
    const count = poisson(rng, weekday === 0 || weekday === 6 ? 3 : 6);
    for (let k = 0; k < count; k++) {
      let startHour = 0;
      for (;;) {
        startHour = 5 + rng() * 18;
        const density = 0.2 + 0.8 * Math.max(bump(startHour, 8, 1.2), bump(startHour, 17.5, 1.4));
        if (rng() < density) break;
      }
      const r = Math.abs(normal(rng)) * 4;
      const a = rng() * 2 * Math.PI;
      incidents.push({
        day,
        startHour,
        endHour: startHour + (30 + exponential(rng, 60)) / 60,
        lat: CENTER.lat + (r * Math.cos(a)) / KM_PER_DEG_LAT,
        lon: CENTER.lon + (r * Math.sin(a)) / (KM_PER_DEG_LAT * Math.cos((CENTER.lat * Math.PI) / 180)),
        radiusKm: 1.5 + exponential(rng, 1.5),
        minutes: Math.exp(Math.log(4) + 0.9 * normal(rng)),
      });
    }
  }
  return incidents;
}

function incidentMinutes(incidents: Incident[], day: number, hour: number, at: { lat: number; lon: number }) {
  let total = 0;
  for (const incident of incidents) {
    if (incident.day !== day || hour < incident.startHour || hour >= incident.endHour) continue;
    const dLat = (at.lat - incident.lat) * KM_PER_DEG_LAT;
    const dLon = (at.lon - incident.lon) * KM_PER_DEG_LAT * Math.cos((CENTER.lat * Math.PI) / 180);
    const d = Math.hypot(dLat, dLon);
    if (d < incident.radiusKm) total += incident.minutes * (1 - d / incident.radiusKm);
  }
  return total;
}

function conditionCode(w: Omit<WeatherConditions, 'condition_code'>, wetDay: boolean): number {
  if (w.snow_mm_h > 0) return w.snow_mm_h < 0.5 ? 600 : w.snow_mm_h < 2 ? 601 : 602;
  if (w.precipitation_mm_h > 0) {
    if (w.precipitation_mm_h < 0.3) return 300;
    return w.precipitation_mm_h < 2.5 ? 500 : w.precipitation_mm_h < 7.6 ? 501 : 502;
  }
  if (w.visibility_m < 1000) return 741;
  return wetDay ? 803 : 800;
}

/** The weather at a local hour of a day: a diurnal swing, showers on wet days, morning fog, gusts. */
export function drawWeather(
  rng: Rng,
  dw: DayWeather,
  localHour: number,
  rainFactor: number,
): WeatherConditions {
  const temperature = dw.temperatureMean + 4 * Math.sin((2 * Math.PI * (localHour - 9)) / 24) + normal(rng);
  const raining = dw.wet && rng() < Math.min(1, 0.55 * rainFactor);
  const rate = raining ? exponential(rng, 1.4) * rainFactor : 0;
  const snow = temperature < 0.5 ? rate : 0;
  const rain = temperature < 0.5 ? 0 : rate;
  const fog = !raining && temperature < 6 && localHour < 10 && rng() < 0.08;
  const visibility = fog ? 200 + rng() * 800 : 10_000 / (1 + 0.4 * rain + 2.5 * snow);
  const base = {
    temperature_c: Math.round(temperature * 10) / 10,
    precipitation_mm_h: Math.round(rain * 100) / 100,
    snow_mm_h: Math.round(snow * 100) / 100,
    wind_speed_m_s: Math.round((dw.windBase + exponential(rng, 1)) * 10) / 10,
    visibility_m: Math.round(Math.min(visibility, 10_000)),
  };
  return { ...base, condition_code: conditionCode(base, dw.wet) };
}

/**
 * A changed world for drift and retraining tests. With every factor at 1 (the default) the output is the
 * training year's, byte for byte; a trip factor keeps every draw, a rain factor or a moved rush hour changes
 * which draws follow (more rainy bookings, other hours), so those bookings differ beyond the season's change.
 */
export interface Season {
  /** Wet days, rain showers and their rates scale by this factor (1 = the training year). */
  rainFactor?: number;
  /** Hours by which the morning and evening peaks (demand, traffic, driver load) move later. */
  rushShiftHours?: number;
  /** Trip lengths scale by this factor. */
  tripFactor?: number;
}

/** The hard world's draws for a seed, from streams of their own: the year's incidents and the t noise. */
export interface WorldDraws {
  incidents: Incident[];
  noiseRng: Rng;
}

export function worldDraws(seed: number, year: number, world: World): WorldDraws {
  return {
    incidents: world.incidents ? drawIncidents(rngFrom(seed + 1_000_003), year, daysIn(year)) : [],
    noiseRng: rngFrom(seed + 2_000_003),
  };
}

/** When a booking is due: what its draws depend on without drawing it. */
export interface BookingSlot {
  id: string;
  /** Day of the year, 0 for 1 January. */
  day: number;
  /** 0 Sunday. */
  weekday: number;
  /** Local hour of day, to the minute. */
  localHour: number;
  /** Local time with its offset, as the client sends it. */
  scheduledAt: string;
}

/**
 * One booking due at `slot`: its trip, plan, load and priority, then its weather (`weatherAt`, called once, in
 * the middle of the draws: generateBookings draws it from the same stream), then the delay and what the
 * client sends.
 */
export function drawBooking(
  rng: Rng,
  slot: BookingSlot,
  weatherAt: () => WeatherConditions,
  { season, world, draws }: { season: Season; world: World; draws: WorldDraws },
): RawBooking {
  const { rushShiftHours = 0, tripFactor = 1 } = season;
  const { day, weekday, localHour } = slot;
  const weekend = weekday === 0 || weekday === 6;
  const point = (spreadKm: number) => {
    const r = Math.abs(normal(rng)) * spreadKm;
    const a = rng() * 2 * Math.PI;
    return {
      lat: Math.round((CENTER.lat + (r * Math.cos(a)) / KM_PER_DEG_LAT) * 1e5) / 1e5,
      lon:
        Math.round(
          (CENTER.lon + (r * Math.sin(a)) / (KM_PER_DEG_LAT * Math.cos((CENTER.lat * Math.PI) / 180))) * 1e5,
        ) / 1e5,
    };
  };
  const pickup = point(5);
  const dropoff = point(7);
  const dLat = (dropoff.lat - pickup.lat) * KM_PER_DEG_LAT;
  const dLon = (dropoff.lon - pickup.lon) * KM_PER_DEG_LAT * Math.cos((CENTER.lat * Math.PI) / 180);
  const distanceKm = Math.max(0.3, Math.hypot(dLat, dLon) * (1.2 + 0.3 * rng()) * tripFactor);
  const rush = rushness(localHour - rushShiftHours, weekend);
  const speedKmH = 28 - 10 * rush;
  const plannedMin = (distanceKm / speedKmH) * 60 * Math.exp(0.1 * normal(rng));
  const load = poisson(rng, 0.8 + 1.2 * rush);
  const u = rng();
  const priority = u < 0.8 ? 'standard' : u < 0.95 ? 'medical' : 'urgent';
  const weather = weatherAt();

  const structural = medianDelay({
    hour: localHour - rushShiftHours,
    weekday,
    dayOfYear: day + 1,
    distanceKm,
    plannedMin,
    load,
    priority,
    weather,
  });
  const incident = world.incidents ? incidentMinutes(draws.incidents, day, localHour, pickup) : 0;
  const median = structural + incident;
  const z = normal(rng);
  const heavy = world.noise === 'student_t3';
  const { noiseRng } = draws;
  // Student-t(3): a normal over the root of a chi-square(3) / 3, scaled to the same standard deviation.
  const noise = heavy
    ? (T3_SCALE * z) / Math.sqrt((normal(noiseRng) ** 2 + normal(noiseRng) ** 2 + normal(noiseRng) ** 2) / 3)
    : z;
  const actual = Math.max(0, median + noiseSd(median) * noise);
  const booking: Booking = {
    booking_id: slot.id,
    scheduled_at: slot.scheduledAt,
    pickup,
    dropoff,
    priority,
    driver_active_bookings: load,
    // Clients do not always send what they know: 15% without distance, 20% without planned duration.
    ...(rng() < 0.85 ? { distance_km: Math.round(distanceKm * 100) / 100 } : {}),
    ...(rng() < 0.8 ? { estimated_duration_min: Math.round(plannedMin * 10) / 10 } : {}),
  };
  const rounded = Math.round(median * 1000) / 1000;
  const spread = (heavy ? T3_80 * T3_SCALE : Z_80) * noiseSd(rounded);
  return {
    booking,
    weather,
    median_delay_minutes: rounded,
    oracle_interval: { low: Math.max(0, rounded - spread), high: rounded + spread },
    incident_minutes: Math.round(incident * 1000) / 1000,
    actual_delay_minutes: Math.round(actual * 100) / 100,
  };
}

export function generateBookings({
  seed,
  count,
  year = 2025,
  season = {},
  world = WORLDS.default,
}: {
  seed: number;
  count: number;
  year?: number;
  season?: Season;
  world?: World;
}) {
  const { rainFactor = 1, rushShiftHours = 0 } = season;
  const rng = rngFrom(seed);
  const days = daysIn(year);
  const draws = worldDraws(seed, year, world);
  const dayWeather = drawDayWeather(rng, days, rainFactor);

  const out: RawBooking[] = [];
  for (let i = 0; i < count; i++) {
    const day = Math.floor(rng() * days);
    // Hours follow demand (rejection sampling).
    let hour = 0;
    do hour = rng() * 24;
    while (rng() >= demandDensity(hour, rushShiftHours));
    const localMidnightGuess = Date.UTC(year, 0, 1 + day) - 3_600_000;
    const offset = parisOffsetHours(new Date(localMidnightGuess + hour * 3_600_000));
    const utc = new Date(Date.UTC(year, 0, 1 + day) + Math.round(hour * 60) * 60_000 - offset * 3_600_000);
    const localHour = Math.round(hour * 60) / 60;
    const slot = {
      id: `syn-${seed}-${i}`,
      day,
      weekday: new Date(Date.UTC(year, 0, 1 + day)).getUTCDay(),
      localHour,
      scheduledAt: isoWithOffset(utc, offset),
    };
    const dw = dayWeather[day] as DayWeather;
    out.push(
      drawBooking(rng, slot, () => drawWeather(rng, dw, localHour, rainFactor), { season, world, draws }),
    );
  }
  return out;
}
