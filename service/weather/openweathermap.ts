import { z } from 'zod';
import type { WeatherConditions } from '../domain/weather.js';

/*
 * OpenWeatherMap's current weather (/data/2.5/weather) and 5 day / 3 hour forecast (/data/2.5/forecast),
 * parsed from their real shapes: `rain` and `snow` appear only when it falls, `visibility` may be absent,
 * and `cod` is a number or a string depending on the endpoint and the error.
 */

const precipitation = z.object({ '1h': z.number().optional(), '3h': z.number().optional() }).optional();
const sample = z.object({
  main: z.object({ temp: z.number() }),
  wind: z.object({ speed: z.number() }).optional(),
  rain: precipitation,
  snow: precipitation,
  visibility: z.number().optional(),
  weather: z.array(z.object({ id: z.number() })).optional(),
});
const CurrentSchema = sample.extend({ cod: z.union([z.number(), z.string()]).optional() });
const ForecastSchema = z.object({
  cod: z.union([z.number(), z.string()]),
  list: z.array(sample.extend({ dt: z.number() })).min(1),
});

export class WeatherApiError extends Error {
  constructor(
    readonly status: number,
    /** Bounded label for metrics: auth, rate_limited, not_found, server_error, bad_response, timeout, network. */
    readonly kind: string,
    message: string,
    readonly retryAfterS?: number,
  ) {
    super(message);
    this.name = 'WeatherApiError';
  }
}

/** mm per hour from OpenWeatherMap's last-hour or last-3-hours accumulation. */
function ratePerHour(p: z.infer<typeof precipitation>): number {
  if (!p) return 0;
  if (p['1h'] !== undefined) return p['1h'];
  return p['3h'] !== undefined ? p['3h'] / 3 : 0;
}

function conditionsOf(s: z.infer<typeof sample>): WeatherConditions {
  return {
    temperature_c: s.main.temp,
    precipitation_mm_h: ratePerHour(s.rain),
    snow_mm_h: ratePerHour(s.snow),
    wind_speed_m_s: s.wind?.speed ?? 0,
    visibility_m: s.visibility ?? 10_000,
    condition_code: s.weather?.[0]?.id ?? 800,
  };
}

/** A forecast as cached: one entry per 3-hour slot, keyed by the slot's start (epoch seconds). */
export interface ForecastSlots {
  slots: { at: number; conditions: WeatherConditions }[];
}

export function parseCurrent(body: unknown): WeatherConditions {
  return conditionsOf(CurrentSchema.parse(body));
}

export function parseForecast(body: unknown): ForecastSlots {
  const parsed = ForecastSchema.parse(body);
  return { slots: parsed.list.map((s) => ({ at: s.dt, conditions: conditionsOf(s) })) };
}

/** The forecast slot nearest to a time; null when the time is outside the forecast by more than a slot. */
export function nearestSlot(forecast: ForecastSlots, atEpochS: number): WeatherConditions | null {
  let best: ForecastSlots['slots'][number] | undefined;
  for (const slot of forecast.slots) {
    if (!best || Math.abs(slot.at - atEpochS) < Math.abs(best.at - atEpochS)) best = slot;
  }
  return best && Math.abs(best.at - atEpochS) <= 3 * 3600 ? best.conditions : null;
}

export interface OpenWeatherMapClient {
  current(lat: number, lon: number, signal: AbortSignal): Promise<WeatherConditions>;
  forecast(lat: number, lon: number, signal: AbortSignal): Promise<ForecastSlots>;
}

/** An endpoint of the client, and what either answers: the weather service calls and caches them by endpoint. */
export type WeatherEndpoint = keyof OpenWeatherMapClient;
export type WeatherData = WeatherConditions | ForecastSlots;

export function openWeatherMapClient({
  baseUrl,
  apiKey,
}: {
  baseUrl: string;
  apiKey: string;
}): OpenWeatherMapClient {
  async function get(path: string, lat: number, lon: number, signal: AbortSignal): Promise<unknown> {
    const url = new URL(path, baseUrl);
    url.search = new URLSearchParams({
      lat: lat.toFixed(4),
      lon: lon.toFixed(4),
      units: 'metric',
      appid: apiKey,
    }).toString();
    let res: Response;
    try {
      res = await fetch(url, { signal });
    } catch (err) {
      const aborted = (err as Error).name === 'AbortError' || (err as Error).name === 'TimeoutError';
      throw new WeatherApiError(
        0,
        aborted ? 'timeout' : 'network',
        aborted ? 'weather API timed out' : 'weather API unreachable',
      );
    }
    const text = await res.text();
    let body: unknown;
    try {
      body = JSON.parse(text);
    } catch {
      throw new WeatherApiError(
        res.status,
        res.ok ? 'bad_response' : statusKind(res.status),
        `weather API answered ${res.status} with a non-JSON body`,
      );
    }
    // Errors are reported in `cod` too, sometimes with HTTP 200; trust the worse of the two.
    const cod = Number((body as { cod?: unknown })?.cod ?? res.status);
    const status = res.ok && Number.isFinite(cod) && cod >= 400 ? cod : res.status;
    if (status >= 400) {
      const retryAfter = Number(res.headers.get('retry-after'));
      throw new WeatherApiError(
        status,
        statusKind(status),
        `weather API answered ${status}: ${String((body as { message?: unknown })?.message ?? '').slice(0, 200)}`,
        Number.isFinite(retryAfter) && retryAfter > 0 ? retryAfter : undefined,
      );
    }
    return body;
  }

  const parsed = <T>(parse: (b: unknown) => T, body: unknown, status: number): T => {
    try {
      return parse(body);
    } catch {
      throw new WeatherApiError(status, 'bad_response', 'weather API answered an unexpected shape');
    }
  };

  return {
    current: async (lat, lon, signal) =>
      parsed(parseCurrent, await get('/data/2.5/weather', lat, lon, signal), 200),
    forecast: async (lat, lon, signal) =>
      parsed(parseForecast, await get('/data/2.5/forecast', lat, lon, signal), 200),
  };
}

function statusKind(status: number): string {
  if (status === 401 || status === 403) return 'auth';
  if (status === 429) return 'rate_limited';
  if (status === 404) return 'not_found';
  return status >= 500 ? 'server_error' : 'bad_response';
}
