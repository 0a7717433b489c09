import type { Booking } from './booking.js';

export interface WeatherConditions {
  temperature_c: number;
  precipitation_mm_h: number;
  snow_mm_h: number;
  wind_speed_m_s: number;
  visibility_m: number;
  /** OpenWeatherMap condition code (https://openweathermap.org/weather-conditions). */
  condition_code: number;
}

/** Where a prediction's weather came from: measured (api, cache), stood in for (default), or not asked. */
export const WEATHER_SOURCES = ['api', 'cache', 'default', 'disabled'] as const;
export type WeatherSource = (typeof WEATHER_SOURCES)[number];

export interface WeatherLookup {
  source: WeatherSource;
  /** null when enrichment is disabled: the predictors then ignore weather entirely. */
  conditions: WeatherConditions | null;
}

/** Enriches bookings with weather. Implementations never throw: an outage degrades to defaults. */
export interface WeatherProvider {
  lookup(booking: Booking): Promise<WeatherLookup>;
}

/** Mild, dry, clear: conditions that add no delay, used when no weather source is configured. */
export const NEUTRAL_WEATHER: Readonly<WeatherConditions> = Object.freeze({
  temperature_c: 12,
  precipitation_mm_h: 0,
  snow_mm_h: 0,
  wind_speed_m_s: 3,
  visibility_m: 10_000,
  condition_code: 800,
});
