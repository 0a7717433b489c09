import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

export type FakeMode =
  | { kind: 'ok'; rainMmH?: number }
  | { kind: 'slow'; delayMs: number }
  | { kind: 'status'; status: number; cod?: number | string; retryAfterS?: number }
  | { kind: 'malformed' };

/**
 * A stand-in for api.openweathermap.org on loopback, answering the real response shapes (metric units):
 * current weather with `rain.1h` only when it rains, a 40-slot forecast with `rain.3h`, and the real error
 * bodies (`cod` as a number for 401/429, as a string for 404).
 */
export async function startFakeOpenWeatherMap() {
  const calls: {
    path: string;
    lat: number;
    lon: number;
    appid: string | null;
    /** The W3C trace context the caller sent, if any. */
    traceparent: string | undefined;
  }[] = [];
  let mode: FakeMode = { kind: 'ok' };
  const server: Server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://fake');
    calls.push({
      path: url.pathname,
      lat: Number(url.searchParams.get('lat')),
      lon: Number(url.searchParams.get('lon')),
      appid: url.searchParams.get('appid'),
      traceparent: req.headers.traceparent as string | undefined,
    });
    const send = (status: number, body: string, headers: Record<string, string> = {}) => {
      res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', ...headers });
      res.end(body);
    };
    const m = mode;
    if (m.kind === 'malformed') return send(200, '{"cod": 200, "main": {"temp": ');
    if (m.kind === 'status') {
      const messages: Record<number, string> = {
        401: 'Invalid API key. Please see https://openweathermap.org/faq#error401 for more info.',
        404: 'city not found',
        429: 'Your account is temporary blocked due to exceeding of requests limitation of your subscription type.',
        500: 'Internal error',
      };
      return send(
        m.status,
        JSON.stringify({ cod: m.cod ?? m.status, message: messages[m.status] ?? 'error' }),
        m.retryAfterS ? { 'retry-after': String(m.retryAfterS) } : {},
      );
    }
    const rain = m.kind === 'ok' ? (m.rainMmH ?? 0) : 0;
    const reply = () => {
      if (url.pathname === '/data/2.5/weather') {
        return send(
          200,
          JSON.stringify({
            coord: { lon: Number(url.searchParams.get('lon')), lat: Number(url.searchParams.get('lat')) },
            weather: [
              { id: rain > 0 ? 501 : 800, main: rain > 0 ? 'Rain' : 'Clear', description: '', icon: '01d' },
            ],
            main: { temp: 7.4, feels_like: 5.1, pressure: 1012, humidity: 81 },
            visibility: rain > 0 ? 6000 : 10_000,
            wind: { speed: 4.6, deg: 230 },
            ...(rain > 0 ? { rain: { '1h': rain } } : {}),
            dt: Math.floor(Date.now() / 1000),
            cod: 200,
          }),
        );
      }
      if (url.pathname === '/data/2.5/forecast') {
        const start = Math.floor(Date.now() / 1000 / 10_800) * 10_800;
        return send(
          200,
          JSON.stringify({
            cod: '200',
            message: 0,
            cnt: 40,
            list: Array.from({ length: 40 }, (_, i) => ({
              dt: start + i * 10_800,
              main: { temp: 5 + (i % 8) },
              weather: [{ id: i % 2 ? 500 : 803 }],
              wind: { speed: 3 + (i % 5) },
              visibility: 10_000,
              ...(i % 2 ? { rain: { '3h': 1.5 + rain * 3 } } : {}),
              dt_txt: new Date((start + i * 10_800) * 1000).toISOString().replace('T', ' ').slice(0, 19),
            })),
          }),
        );
      }
      return send(404, JSON.stringify({ cod: '404', message: 'Internal error' }));
    };
    if (m.kind === 'slow') setTimeout(reply, m.delayMs);
    else reply();
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    calls,
    setMode(next: FakeMode) {
      mode = next;
    },
    close: () =>
      new Promise<void>((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}
