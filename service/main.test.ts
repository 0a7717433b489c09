import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { request } from 'node:http';
import { connect } from 'node:net';
import { join } from 'node:path';
import postgres from 'postgres';
import { afterEach, describe, expect, it } from 'vitest';
import { predictions } from '../db/schema.js';
import { freshPostgres, postgresAvailable } from './test-support/databases.js';
import { booking, eventually, flagsDocument, tempDir, writeFlags } from './test-support/harness.js';
import { migratedDataDir, type ServiceProcess, startService, waitForReady } from './test-support/process.js';

const hasPostgres = await postgresAvailable();
const running: ServiceProcess[] = [];
async function start(env: Record<string, string> = {}) {
  const service = await startService(env);
  running.push(service);
  return service;
}
afterEach(async () => {
  await Promise.all(running.splice(0).map((s) => s.stop('SIGKILL')));
});

describe('the service as a process', () => {
  it('starts on embedded defaults, predicts, exposes metrics, and exits 0 on SIGTERM', async () => {
    // A new, empty DATA_DIR: the first start migrates it.
    const service = await start({
      DEPLOYMENT_ENVIRONMENT: 'staging',
      DATA_DIR: tempDir('delay-first-start-'),
    });
    await waitForReady(service);
    const res = await fetch(`http://127.0.0.1:${service.port}/v1/predictions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(booking()),
    });
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({ booking_id: 'bk-1', weather: { source: 'default' } });
    const metrics = await (await fetch(`http://127.0.0.1:${service.metricsPort}/metrics`)).text();
    expect(metrics).toMatch(/delay_predictions_total\{[^}]*endpoint="single"[^}]*\} 1/);
    // The route Hono matched, as the semantic conventions name it: requests per endpoint, never per URL.
    expect(metrics).toMatch(
      /http_server_request_duration_count\{[^}]*http_route="\/v1\/predictions"[^}]*\} 1/,
    );
    expect(metrics).toMatch(/delay_features_baseline_ratio\{feature="distance_km"/);
    // The resource tells releases and replicas apart.
    const version = JSON.parse(readFileSync('package.json', 'utf8')).version;
    expect(metrics).toMatch(new RegExp(`target_info\\{[^}]*service_version="${version}"`));
    expect(metrics).toMatch(/target_info\{[^}]*service_instance_id="[0-9a-f-]{36}"/);
    expect(metrics).toMatch(/target_info\{[^}]*deployment_environment_name="staging"/);
    expect(metrics).toMatch(/delay_rollout_ml_percentage\{[^}]*\} 10/);
    const lint = spawnSync('promtool', ['check', 'metrics'], { input: metrics, encoding: 'utf8' });
    if (lint.error && process.env.CI !== 'true')
      console.warn('skipping promtool check metrics: promtool not found');
    else expect(lint.status, lint.stdout + lint.stderr).toBe(0);
    expect(await service.stop('SIGTERM')).toBe(0);
    expect(service.output()).toContain('"msg":"stopped"');
  });

  it.skipIf(!hasPostgres)('gives stored predictions real trace ids without an OTLP endpoint', async () => {
    const database = await freshPostgres();
    try {
      const service = await start({ DATABASE_URL: database.url });
      await waitForReady(service);
      for (const booking_id of ['t-1', 't-2'])
        await fetch(`http://127.0.0.1:${service.port}/v1/predictions`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify(booking({ booking_id })),
        });
      const ids = await eventually(
        async () =>
          (await database.db.select({ traceId: predictions.traceId }).from(predictions)).map(
            (r) => r.traceId,
          ),
        (rows) => rows.length === 2,
      );
      for (const id of ids) expect(id).toMatch(/^(?!0{32})[0-9a-f]{32}$/);
      expect(ids[0]).not.toBe(ids[1]);
      expect(await service.stop('SIGTERM')).toBe(0);
    } finally {
      await database.close();
    }
  });

  it('closes a connection whose body trickles in slower than REQUEST_TIMEOUT_MS', async () => {
    const service = await start({ REQUEST_TIMEOUT_MS: '2000' });
    await waitForReady(service);
    const started = performance.now();
    const closed = await new Promise<{ seconds: number; answer: string }>((resolve, reject) => {
      const socket = connect(service.port, '127.0.0.1', () => {
        socket.write(
          'POST /v1/predictions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 500\r\n\r\n{',
        );
      });
      let answer = '';
      // One byte every 200 ms: the body would take 100 s to arrive.
      const drip = setInterval(() => socket.writable && socket.write(' '), 200);
      socket.on('data', (d) => {
        answer += d.toString();
      });
      socket.on('close', () => {
        clearInterval(drip);
        resolve({ seconds: (performance.now() - started) / 1000, answer });
      });
      socket.on('error', () => undefined);
      setTimeout(() => reject(new Error('still open after 15 s')), 15_000);
    });
    expect(closed.seconds).toBeLessThan(6);
    expect(closed.answer).toMatch(/^HTTP\/1\.1 408/);
  });

  it('drains a request in flight when SIGTERM arrives', async () => {
    const service = await start();
    await waitForReady(service);
    const body = JSON.stringify({
      bookings: Array.from({ length: 50 }, (_, i) => booking({ booking_id: `b${i}` })),
    });
    const half = Math.floor(body.length / 2);
    const response = new Promise<{ status: number; body: string }>((resolve, reject) => {
      const req = request(
        {
          host: '127.0.0.1',
          port: service.port,
          path: '/v1/predictions/batch',
          method: 'POST',
          headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) },
        },
        (res) => {
          let text = '';
          res.on('data', (d) => {
            text += d;
          });
          res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text }));
        },
      );
      req.on('error', reject);
      req.write(body.slice(0, half));
      // The request is on the wire, half sent, when the signal arrives; the rest follows later.
      setTimeout(() => {
        service.child.kill('SIGTERM');
        setTimeout(() => req.end(body.slice(half)), 300);
      }, 200);
    });
    const answered = await response;
    expect(answered.status).toBe(200);
    expect(JSON.parse(answered.body).predictions).toHaveLength(50);
    expect(await service.exited).toBe(0);
  });

  it('enriches with OpenWeatherMap through Redis when configured, and never logs or traces the key or the tokens', async () => {
    const { startFakeOpenWeatherMap } = await import('./test-support/fake-openweathermap.js');
    const { startOtlpSink } = await import('./test-support/otlp-sink.js');
    const fake = await startFakeOpenWeatherMap();
    const sink = await startOtlpSink({ keepSpans: true });
    fake.setMode({ kind: 'ok', rainMmH: 3 });
    try {
      const service = await start({
        OPENWEATHER_API_KEY: 'do-not-log-me',
        ALERTMANAGER_WEBHOOK_TOKEN: 'webhook-token-do-not-log',
        FEEDBACK_TOKEN: 'feedback-token-do-not-log',
        OPENWEATHER_BASE_URL: fake.url,
        OTEL_EXPORTER_OTLP_ENDPOINT: sink.url,
        REDIS_URL: 'redis://127.0.0.1:6379',
        LOG_LEVEL: 'debug',
      });
      await waitForReady(service);
      // A weather cell of its own (0.1° of longitude per second, for an hour): Redis keeps cells for minutes,
      // and the key is only sent, so only checked, when the cell is not cached yet.
      const lon = -179.95 + (Math.floor(Date.now() / 1000) % 3500) * 0.1;
      const predict = () =>
        fetch(`http://127.0.0.1:${service.port}/v1/predictions`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify(
            booking({
              scheduled_at: new Date().toISOString(),
              pickup: { lat: -33.91, lon },
              dropoff: { lat: -33.88, lon },
            }),
          ),
        }).then((r) => r.json());
      const first = await predict();
      expect(first.weather.source).toBe('api');
      expect(fake.calls.some((call) => call.appid === 'do-not-log-me')).toBe(true);
      expect((await predict()).weather.source).toBe('cache');
      for (const [path, token] of [
        ['/v1/feedback', 'feedback-token-do-not-log'],
        ['/v1/feedback', 'feedback-token-do-not-log-wrong'],
        ['/v1/webhooks/alertmanager', 'webhook-token-do-not-log'],
        ['/v1/webhooks/alertmanager', 'webhook-token-do-not-log-wrong'],
      ] as const) {
        await fetch(`http://127.0.0.1:${service.port}${path}`, {
          method: 'POST',
          headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
          body: JSON.stringify({ booking_id: first.booking_id, actual_delay_minutes: 3 }),
        });
      }
      // The weather call was timed, and the OTLP export's own requests (also outgoing) leave /metrics valid.
      const metrics = await (await fetch(`http://127.0.0.1:${service.metricsPort}/metrics`)).text();
      expect(metrics).toMatch(
        /http_client_request_duration_count\{[^}]*http_response_status_code="200"[^}]*server_address="127.0.0.1"/,
      );
      const lint = spawnSync('promtool', ['check', 'metrics'], { input: metrics, encoding: 'utf8' });
      if (lint.error && process.env.CI !== 'true')
        console.warn('skipping promtool check metrics: promtool not found');
      else expect(lint.status, lint.stdout + lint.stderr).toBe(0);
      expect(await service.stop('SIGTERM')).toBe(0);
      // The API call is a client span under the weather lookup, and OpenWeatherMap received its trace context.
      const spans = sink.spans();
      const call = spans.find((s) => s.kind === 3 && String(s.attributes['url.full']).includes('appid='));
      expect(spans.find((s) => s.spanId === call?.parentSpanId)?.name).toBe('weather.lookup');
      expect(call?.attributes).toMatchObject({
        'http.request.method': 'GET',
        'server.address': '127.0.0.1',
        'http.response.status_code': 200,
        'url.full': expect.stringContaining('appid=REDACTED'),
      });
      const sent = fake.calls.find((c) => c.appid === 'do-not-log-me')?.traceparent;
      expect(sent?.split('-')[1]).toBe(call?.traceId);
      expect(sent?.split('-')[2]).toBe(call?.spanId);
      // The spans of the requests that carried a token, of the weather lookup and of its call to the API were
      // exported, and no export holds a secret (the call's URL is recorded with its query values redacted).
      const exported = sink.exportedText();
      for (const traced of ['weather.lookup', '/v1/feedback', '/v1/webhooks/alertmanager'])
        expect(exported).toContain(traced);
      for (const secret of ['do-not-log-me', 'webhook-token-do-not-log', 'feedback-token-do-not-log']) {
        expect(service.output()).not.toContain(secret);
        expect(exported).not.toContain(secret);
      }
    } finally {
      await Promise.all([fake.close(), sink.close()]);
    }
  });

  it('writes every prediction to its database, and flushes the queue on SIGTERM', async () => {
    const dataDir = await migratedDataDir();
    const service = await start({ DATA_DIR: dataDir });
    await waitForReady(service);
    const res = await fetch(`http://127.0.0.1:${service.port}/v1/predictions/batch`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({
        bookings: Array.from({ length: 300 }, (_, i) => booking({ booking_id: `flush-${i}` })),
      }),
    });
    expect(res.status).toBe(200);
    expect(await service.stop('SIGTERM')).toBe(0);
    const { openDatabase } = await import('./storage/database.js');
    const database = await openDatabase({ dataDir });
    try {
      const { predictions } = await import('../db/schema.js');
      const { sql } = await import('drizzle-orm');
      const [stored] = await database.db.select({ n: sql<number>`count(*)::int` }).from(predictions);
      expect(Number(stored?.n)).toBe(300);
    } finally {
      await database.close();
    }
  });

  it.skipIf(!hasPostgres)(
    'SIGTERM while another session locks the predictions table: exits 0, counts and logs every row left, stored + dropped = answered',
    async () => {
      const database = await freshPostgres();
      const locker = postgres(database.url, { max: 1, onnotice: () => {} });
      let release: () => void = () => undefined;
      try {
        const service = await start({ DATABASE_URL: database.url, SHUTDOWN_TIMEOUT_MS: '4000' });
        await waitForReady(service);
        const post = async (from: number, n: number) => {
          const res = await fetch(`http://127.0.0.1:${service.port}/v1/predictions/batch`, {
            method: 'POST',
            headers: { 'content-type': 'application/json' },
            body: JSON.stringify({
              bookings: Array.from({ length: n }, (_, i) => booking({ booking_id: `lock-${from + i}` })),
            }),
          });
          expect(res.status).toBe(200);
          return ((await res.json()) as { predictions: unknown[] }).predictions.length;
        };
        const stored = async () => Number((await locker`select count(*)::int as n from predictions`)[0]?.n);
        let answered = await post(0, 1000);
        await eventually(stored, (n) => n === 1000);

        // A session holds the table: the log's next insert waits on the lock with no end of its own.
        const held = new Promise<void>((r) => {
          release = r;
        });
        let locked: () => void = () => undefined;
        const lockTaken = new Promise<void>((r) => {
          locked = r;
        });
        const transaction = locker.begin(async (sql) => {
          await sql`lock table predictions in access exclusive mode`;
          locked();
          await held;
        });
        await lockTaken;
        for (let i = 1; i <= 4; i++) answered += await post(i * 1000, 1000);
        expect(answered).toBe(5000);

        expect(await service.stop('SIGTERM')).toBe(0);
        release();
        await transaction;
        const left = service
          .output()
          .split('\n')
          .filter((line) => line.includes('rows left unwritten at shutdown'))
          .map((line) => JSON.parse(line) as { dropped: number; msg: string });
        expect(left).toHaveLength(1);
        const dropped = left[0]?.dropped ?? 0;
        expect(dropped).toBeGreaterThan(0);
        expect((await stored()) + dropped).toBe(answered);
        expect(service.output()).toContain('"msg":"stopped"');
      } finally {
        release();
        await locker.end({ timeout: 1 });
        await database.close();
      }
    },
    60_000,
  );

  it('exits non-zero naming a database it cannot open', async () => {
    const service = await start({ DATABASE_URL: 'postgres://nobody@127.0.0.1:1/none' });
    expect(await service.exited).toBe(1);
    expect(service.output()).toContain('database at DATABASE_URL cannot be opened or migrated');
    expect(service.output()).not.toContain('nobody@');
  });

  it('refuses a second process on the same PGlite DATA_DIR, naming why, while the first serves on', async () => {
    const dataDir = await migratedDataDir();
    const first = await start({ DATA_DIR: dataDir });
    await waitForReady(first);
    expect(first.output()).toContain('PGlite serves this process only');
    const second = await start({ DATA_DIR: dataDir });
    expect(await second.exited).toBe(1);
    expect(second.output()).toMatch(
      /in DATA_DIR .* cannot be opened or migrated: DATA_DIR .* is in use by another process: PGlite serves one process only/,
    );
    const res = await fetch(`http://127.0.0.1:${first.port}/v1/predictions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(booking()),
    });
    expect(res.status).toBe(200);
  });

  it('exits non-zero naming a bad variable', async () => {
    const service = await start({ PORT: 'eighty', BATCH_MAX_BOOKINGS: '0' });
    expect(await service.exited).toBe(1);
    expect(service.output()).toMatch(/PORT: .*BATCH_MAX_BOOKINGS: |BATCH_MAX_BOOKINGS: .*PORT: /);
  });

  it('refuses at start, in one line naming the variable, a token no header can carry, METRICS_PORT equal to PORT and a FeatureFlag without flagd', async () => {
    const refusals = {
      'FEEDBACK_TOKEN: must hold visible ASCII characters only': {
        FEEDBACK_TOKEN: 'jeton-secret-été-0123456789',
      },
      'METRICS_PORT: equals PORT (18080)': { PORT: '18080', METRICS_PORT: '18080' },
      'FLAGS_FEATUREFLAG: needs FLAGD_HOST': {
        FLAGS_FEATUREFLAG: 'delay/delay-prediction',
        KUBERNETES_API_URL: 'https://127.0.0.1:1',
      },
    };
    const services = await Promise.all(Object.values(refusals).map((env) => start(env)));
    for (const [i, expected] of Object.keys(refusals).entries()) {
      const service = services[i] as ServiceProcess;
      expect(await service.exited, expected).toBe(1);
      expect(service.output()).toContain(`delay-prediction: invalid configuration: ${expected}`);
      expect(service.output()).not.toMatch(/\n\s+at /);
    }
  });

  it('exits non-zero in one line naming PORT, METRICS_PORT or HOST when it cannot listen, and why', async () => {
    const { createServer } = await import('node:net');
    const taken = createServer();
    await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve));
    try {
      const port = (taken.address() as { port: number }).port;
      // A PORT in use is met only once the service is composed (PGlite migrated): the test's longer timeout.
      const cases = [
        [
          { PORT: String(port) },
          `delay-prediction: PORT ${port} is already in use on HOST 127.0.0.1 (EADDRINUSE)`,
        ],
        [
          { METRICS_PORT: String(port) },
          `delay-prediction: METRICS_PORT ${port} is already in use on HOST 127.0.0.1 (EADDRINUSE)`,
        ],
        [
          { HOST: 'no-such-host.invalid' },
          'delay-prediction: HOST "no-such-host.invalid" cannot be resolved',
        ],
      ] as const;
      const services = await Promise.all(cases.map(([env]) => start(env)));
      for (const [i, [, expected]] of cases.entries()) {
        const service = services[i] as ServiceProcess;
        expect(await service.exited, expected).toBe(1);
        expect(service.output()).toContain(expected);
        expect(service.output()).not.toMatch(/\n\s+at /);
      }
    } finally {
      taken.close();
    }
  }, 90_000);

  it('exits non-zero naming an invalid flag file and why', async () => {
    const file = join(tempDir(), 'flags.json');
    const doc = flagsDocument();
    (doc.flags as Record<string, unknown>)['delay-model'] = undefined;
    writeFlags(file, doc);
    const service = await start({ FLAGS_FILE: file });
    expect(await service.exited).toBe(1);
    expect(service.output()).toContain(`flag file ${file}: flag 'delay-model' is missing`);
  });
});
