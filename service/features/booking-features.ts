import type { Booking } from '../domain/booking.js';
import type { WeatherConditions } from '../domain/weather.js';

/**
 * The one place booking features are computed, for serving and (through the model pipeline) for training.
 * Times are the booking's local wall-clock time, read from the offset it was sent with: rush hour is a
 * local phenomenon.
 */
export interface BookingFeatures {
  hour_local: number;
  day_of_week: number;
  month: number;
  is_weekend: boolean;
  distance_km: number;
  distance_estimated: boolean;
  estimated_duration_min: number | null;
  driver_active_bookings: number;
  priority: 'standard' | 'medical' | 'urgent';
  weather: WeatherConditions | null;
}

/** Road distance is, on average, about 1.3 times the great-circle distance in a city. */
export const ROAD_FACTOR = 1.3;
const EARTH_RADIUS_KM = 6371.0088;

export function haversineKm(a: { lat: number; lon: number }, b: { lat: number; lon: number }): number {
  const rad = Math.PI / 180;
  const dLat = (b.lat - a.lat) * rad;
  const dLon = (b.lon - a.lon) * rad;
  const h = Math.sin(dLat / 2) ** 2 + Math.cos(a.lat * rad) * Math.cos(b.lat * rad) * Math.sin(dLon / 2) ** 2;
  return 2 * EARTH_RADIUS_KM * Math.asin(Math.min(1, Math.sqrt(h)));
}

const OFFSET = /(Z|[+-]\d{2}:?\d{2})$/i;

/** Local wall-clock time of an ISO 8601 timestamp that carries its own offset. */
export function localTime(iso: string): { hour: number; dayOfWeek: number; month: number } {
  const match = OFFSET.exec(iso);
  let offsetMinutes = 0;
  if (match?.[1] && match[1].toUpperCase() !== 'Z') {
    const digits = match[1].replace(':', '');
    const sign = digits.startsWith('-') ? -1 : 1;
    offsetMinutes = sign * (Number(digits.slice(1, 3)) * 60 + Number(digits.slice(3, 5)));
  }
  const local = new Date(Date.parse(iso) + offsetMinutes * 60_000);
  return {
    hour: local.getUTCHours() + local.getUTCMinutes() / 60,
    dayOfWeek: local.getUTCDay(),
    month: local.getUTCMonth() + 1,
  };
}

export function bookingFeatures(booking: Booking, weather: WeatherConditions | null): BookingFeatures {
  const { hour, dayOfWeek, month } = localTime(booking.scheduled_at);
  const distanceGiven = booking.distance_km !== undefined;
  return {
    hour_local: hour,
    day_of_week: dayOfWeek,
    month,
    is_weekend: dayOfWeek === 0 || dayOfWeek === 6,
    distance_km: distanceGiven
      ? (booking.distance_km as number)
      : haversineKm(booking.pickup, booking.dropoff) * ROAD_FACTOR,
    distance_estimated: !distanceGiven,
    estimated_duration_min: booking.estimated_duration_min ?? null,
    driver_active_bookings: booking.driver_active_bookings ?? 0,
    priority: booking.priority ?? 'standard',
    weather,
  };
}

/**
 * Weekday rush hours, local: [start, end) in fractional hours. Traffic peaks around 08:15 and 17:45 on
 * weekdays; these windows hold the hours where it is at least half its peak.
 */
export const RUSH_HOURS = [
  [7, 9.5],
  [16.5, 19.5],
] as const;

export function isWeekdayRushHour(hour: number, weekend: boolean): boolean {
  return !weekend && RUSH_HOURS.some(([start, end]) => hour >= start && hour < end);
}

/** Minutes per km assumed when a booking carries no planned duration (25 km/h, city average). */
export const IMPUTED_MINUTES_PER_KM = 60 / 25;

/**
 * The model's input, in order. The trainer, the ONNX graph and the model card all use this order; a model
 * card whose schema differs is refused at load.
 */
export const FEATURE_SCHEMA = [
  { name: 'hour_local', unit: 'h', description: 'local wall-clock hour, fractional (08:30 = 8.5)' },
  { name: 'day_of_week', unit: 'day', description: '0 = Sunday .. 6 = Saturday, local' },
  { name: 'is_weekend', unit: 'bool', description: '1 on Saturday and Sunday' },
  { name: 'month', unit: 'month', description: '1 .. 12, local' },
  { name: 'distance_km', unit: 'km', description: 'road distance; great-circle x 1.3 when not given' },
  { name: 'estimated_duration_min', unit: 'min', description: 'planned duration; 2.4 min/km when not given' },
  {
    name: 'driver_active_bookings',
    unit: 'bookings',
    description: "driver's active bookings; 0 when not given",
  },
  { name: 'priority_code', unit: 'code', description: '0 standard, 1 medical, 2 urgent' },
  { name: 'temperature_c', unit: '°C', description: 'air temperature' },
  { name: 'precipitation_mm_h', unit: 'mm/h', description: 'rain rate' },
  { name: 'snow_mm_h', unit: 'mm/h', description: 'snowfall rate (water equivalent)' },
  { name: 'wind_speed_m_s', unit: 'm/s', description: 'wind speed' },
  { name: 'visibility_km', unit: 'km', description: 'visibility, capped at 10 km' },
  {
    name: 'rain_at_rush_mm_h',
    unit: 'mm/h',
    description: 'rain rate during weekday rush hours (07:00-09:30, 16:30-19:30 local), else 0',
  },
] as const;

export type FeatureName = (typeof FEATURE_SCHEMA)[number]['name'];
export const FEATURE_NAMES: readonly FeatureName[] = FEATURE_SCHEMA.map((f) => f.name);
export const WEATHER_FEATURES: readonly FeatureName[] = [
  'temperature_c',
  'precipitation_mm_h',
  'snow_mm_h',
  'wind_speed_m_s',
  'visibility_km',
  'rain_at_rush_mm_h',
];

const PRIORITY_CODE = { standard: 0, medical: 1, urgent: 2 } as const;

/**
 * The numeric vector the model scores, in FEATURE_SCHEMA order. Without weather (enrichment off) the model
 * sees neutral conditions, the ones it learned as "no weather effect". Rain costs most at rush hour, when the
 * roads are full: rain_at_rush_mm_h gives the trees that interaction in one split instead of three.
 */
export function featureVector(f: BookingFeatures, neutral: WeatherConditions): number[] {
  const w = f.weather ?? neutral;
  return [
    f.hour_local,
    f.day_of_week,
    f.is_weekend ? 1 : 0,
    f.month,
    f.distance_km,
    f.estimated_duration_min ?? f.distance_km * IMPUTED_MINUTES_PER_KM,
    f.driver_active_bookings,
    PRIORITY_CODE[f.priority],
    w.temperature_c,
    w.precipitation_mm_h,
    w.snow_mm_h,
    w.wind_speed_m_s,
    Math.min(w.visibility_m / 1000, 10),
    isWeekdayRushHour(f.hour_local, f.is_weekend) ? w.precipitation_mm_h : 0,
  ];
}
