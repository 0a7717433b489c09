/** What a caller asks about: one booking, as the API accepts it (service/predictions/schemas.ts validates it). */

export const PRIORITIES = ['standard', 'medical', 'urgent'] as const;
export type Priority = (typeof PRIORITIES)[number];

export interface Coordinates {
  lat: number;
  lon: number;
}

export interface Booking {
  booking_id: string;
  /** ISO 8601 with a UTC offset: the booking's local wall-clock time is read from it. */
  scheduled_at: string;
  pickup: Coordinates;
  dropoff: Coordinates;
  company_id?: string | undefined;
  /** Road distance; straight-line distance x ROAD_FACTOR when absent. */
  distance_km?: number | undefined;
  estimated_duration_min?: number | undefined;
  driver_active_bookings?: number | undefined;
  priority?: Priority | undefined;
}

/** The longest trip a booking may describe, given or implied by its coordinates. */
export const MAX_TRIP_KM = 1000;
