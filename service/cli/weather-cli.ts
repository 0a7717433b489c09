import { metrics as otelMetrics } from '@opentelemetry/api';
import { connectRedis, redisReady } from '../cache/redis.js';
import { createLogger } from '../telemetry/logger.js';
import { createServiceMetrics } from '../telemetry/service-metrics.js';
import { openWeatherMapClient, WeatherApiError } from '../weather/openweathermap.js';
import { createWeatherService } from '../weather/weather-service.js';
import { fail, startCli } from './cli.js';

/*
 * npm run weather -- check [--lat 48.8566 --lon 2.3522]   one API call: is the key accepted? (exit 1 if not)
 * npm run weather -- stats                                 budget used today, cache entries, circuit state
 * Configured by the same environment as the service (OPENWEATHER_API_KEY, REDIS_URL, WEATHER_*).
 */
const { command, values, config } = startCli(
  'npm run weather -- check [--lat N --lon N] | stats',
  ['check', 'stats'],
  { lat: { type: 'string', default: '48.8566' }, lon: { type: 'string', default: '2.3522' } },
);
const { apiKey, baseUrl, ...options } = config.weather;
if (!apiKey) fail('OPENWEATHER_API_KEY is not set: the service uses neutral weather defaults');
const logger = createLogger('warn');
const redis = config.redisUrl ? connectRedis(config.redisUrl, logger) : undefined;
if (redis) await redisReady(redis, 2000);
const weather = createWeatherService({
  client: openWeatherMapClient({ baseUrl, apiKey }),
  redis,
  // The CLI exports no metrics; the no-op meter keeps the service's instruments harmless.
  metrics: createServiceMetrics(otelMetrics.getMeter('weather-cli')),
  logger,
  ...options,
});

let exitCode = 0;
if (command === 'check') {
  try {
    const conditions = await weather.checkKey(Number(values.lat), Number(values.lon));
    console.log(JSON.stringify({ key: 'accepted', base_url: baseUrl, conditions }, null, 2));
  } catch (err) {
    exitCode = 1;
    const status = err instanceof WeatherApiError ? err.status : null;
    const verdict = err instanceof WeatherApiError && err.kind === 'auth' ? 'rejected' : 'unknown';
    console.log(
      JSON.stringify({ key: verdict, base_url: baseUrl, status, error: (err as Error).message }, null, 2),
    );
  }
}
console.log(JSON.stringify({ stats: await weather.stats() }, null, 2));
await redis?.quit();
process.exit(exitCode);
