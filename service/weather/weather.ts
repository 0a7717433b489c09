import { NEUTRAL_WEATHER, type WeatherLookup, type WeatherProvider } from '../domain/weather.js';

/** The provider when no OPENWEATHER_API_KEY is configured: every lookup answers neutral defaults. */
export function neutralWeatherProvider(): WeatherProvider {
  const answer: WeatherLookup = { source: 'default', conditions: NEUTRAL_WEATHER };
  return { lookup: async () => answer };
}
