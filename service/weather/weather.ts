import type { Booking } from '../predictions/schemas.js';

export interface WeatherConditions {
  temperature_c: number;
  precipitation_mm_h: number;
  snow_mm_h: number;
  wind_speed_m_s: number;
  visibility_m: number;
  /** OpenWeatherMap condition code (https://openweathermap.org/weather-conditions). */
  condition_code: number;
}

export type WeatherSource = 'api' | 'cache' | 'default' | 'disabled';

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

/** The provider when no OPENWEATHER_API_KEY is configured: every lookup answers neutral defaults. */
export function neutralWeatherProvider(): WeatherProvider {
  const answer: WeatherLookup = { source: 'default', conditions: NEUTRAL_WEATHER };
  return { lookup: async () => answer };
}
