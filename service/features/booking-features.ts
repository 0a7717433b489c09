import type { Booking } from '../predictions/schemas.js';
import type { WeatherConditions } from '../weather/weather.js';

/**
 * The one place booking features are computed, for serving and (through the model pipeline) for training.
 * Times are the booking's local wall-clock time, read from the offset it was sent with: rush hour is a
 * local phenomenon.
 */
export interface BookingFeatures {
  hour_local: number;
  day_of_week: number;
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
export function localTime(iso: string): { hour: number; dayOfWeek: number } {
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
  };
}

export function bookingFeatures(booking: Booking, weather: WeatherConditions | null): BookingFeatures {
  const { hour, dayOfWeek } = localTime(booking.scheduled_at);
  const distanceGiven = booking.distance_km !== undefined;
  return {
    hour_local: hour,
    day_of_week: dayOfWeek,
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
