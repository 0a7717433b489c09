import { describe, expect, it } from 'vitest';
import { nearestSlot, parseCurrent, parseForecast } from './openweathermap.js';

describe('OpenWeatherMap response shapes', () => {
  it('reads current weather, with rain only when it falls', () => {
    const dry = parseCurrent({
      cod: 200,
      main: { temp: 7.4 },
      wind: { speed: 4.6 },
      visibility: 10_000,
      weather: [{ id: 800 }],
    });
    expect(dry).toEqual({
      temperature_c: 7.4,
      precipitation_mm_h: 0,
      snow_mm_h: 0,
      wind_speed_m_s: 4.6,
      visibility_m: 10_000,
      condition_code: 800,
    });
    const wet = parseCurrent({
      cod: 200,
      main: { temp: 3 },
      wind: { speed: 2 },
      rain: { '1h': 2.3 },
      weather: [{ id: 501 }],
    });
    expect(wet).toMatchObject({ precipitation_mm_h: 2.3, visibility_m: 10_000, condition_code: 501 });
    const threeHours = parseCurrent({ main: { temp: -1 }, snow: { '3h': 1.5 }, weather: [{ id: 601 }] });
    expect(threeHours).toMatchObject({ snow_mm_h: 0.5, wind_speed_m_s: 0 });
  });

  it('reads a forecast with a string cod and picks the nearest 3-hour slot', () => {
    const forecast = parseForecast({
      cod: '200',
      list: [
        { dt: 1_000_000, main: { temp: 1 }, rain: { '3h': 3 }, weather: [{ id: 500 }] },
        { dt: 1_010_800, main: { temp: 2 }, weather: [{ id: 800 }] },
      ],
    });
    expect(nearestSlot(forecast, 1_000_000 + 3600)?.precipitation_mm_h).toBe(1);
    expect(nearestSlot(forecast, 1_010_800 + 4000)?.temperature_c).toBe(2);
    expect(nearestSlot(forecast, 1_010_800 + 4 * 3600)).toBeNull();
  });

  it('refuses what is not a weather answer', () => {
    expect(() => parseCurrent({ cod: '404', message: 'city not found' })).toThrow();
    expect(() => parseForecast({ cod: '200', list: [] })).toThrow();
  });
});
