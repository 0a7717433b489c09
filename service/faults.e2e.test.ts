import { randomBytes } from 'node:crypto';
import { copyFileSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { Redis } from 'ioredis';
import postgres from 'postgres';
import { describe, expect, it, onTestFinished } from 'vitest';
import { flagChanges } from '../db/schema.js';
import { parseFlagConfig } from './flags/flag-config.js';
import type { FlagStatus } from './flags/flag-service.js';
import type { Prediction } from './predictions/schemas.js';
import { openDatabase } from './storage/database.js';
import { startFakeOpenWeatherMap } from './test-support/fake-openweathermap.js';
import {
  booking,
  eventually,
  flagsDocument,
  flagsFile,
  quotedWeightsDocument,
  tempDir,
  writeFlags,
} from './test-support/harness.js';
import { privatePostgresAvailable, startPrivatePostgres } from './test-support/private-postgres.js';
import { redisServerAvailable, startPrivateRedis } from './test-support/private-redis.js';
import {
  type MetricReading,
  migratedDataDir,
  type ServiceProcess,
  scrapeMetrics,
  startService,
  waitForReady,
} from './test-support/process.js';

/*
 * Faults under load, on the real process: each case runs concurrent prediction requests while a dependency
 * dies, slows down, refuses or is corrupted, and checks that every prediction still answers 200, that the
 * documented fallback happens, that the metric meant to show it moves, and that nothing is lost uncounted.
 */

const hasRedisServer = redisServerAvailable();
const hasPostgresCluster = privatePostgresAvailable();

/** A temporary directory removed after the case. */
function scratch(prefix: string) {
  const dir = tempDir(prefix);
  onTestFinished(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** A migrated PGlite DATA_DIR removed after the case. */
async function scratchData() {
  const dir = await migratedDataDir();
  onTestFinished(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

async function start(env: Record<string, string>) {
  const service = await startService({ DATA_DIR: await scratchData(), ...env });
  onTestFinished(async () => {
    await service.stop('SIGKILL');
  });
  await waitForReady(service);
  return service;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const scrape = (service: ServiceProcess) => scrapeMetrics(service.metricsPort);

// ---------------------------------------------------------------------------------------------------------
// The load: concurrent loops of single predictions and batches, each answer tagged with the phase in which its
// request was sent.

interface Tally {
  requests: number;
  bookings: number;
  failures: number;
  maxMs: number;
}

function startLoad(
  service: ServiceProcess,
  {
    makeBooking = (n: number) => booking({ booking_id: `load-${n}` }),
    loops = 8,
    batchLoops = 1,
    batchSize = 20,
  }: {
    makeBooking?: (n: number) => Record<string, unknown>;
    loops?: number;
    batchLoops?: number;
    batchSize?: number;
  } = {},
) {
  const base = `http://127.0.0.1:${service.port}/v1/predictions`;
  let phase = 'start';
  let stopping = false;
  let n = 0;
  const answers: { phase: string; answer: Prediction }[] = [];
  const failures: string[] = [];
  const tallies = new Map<string, Tally>();
  const inFlight = new Map<string, number>();
  const tally = (name: string) => {
    const t = tallies.get(name) ?? { requests: 0, bookings: 0, failures: 0, maxMs: 0 };
    tallies.set(name, t);
    return t;
  };

  async function once(batch: boolean) {
    const sentIn = phase;
    const bookings = Array.from({ length: batch ? batchSize : 1 }, () => makeBooking(n++));
    const started = performance.now();
    inFlight.set(sentIn, (inFlight.get(sentIn) ?? 0) + 1);
    try {
      const res = await fetch(batch ? `${base}/batch` : base, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(batch ? { bookings } : bookings[0]),
        signal: AbortSignal.timeout(60_000),
      });
      const text = await res.text();
      if (res.status !== 200) throw new Error(`HTTP ${res.status} ${text.slice(0, 300)}`);
      const got: Prediction[] = batch ? JSON.parse(text).predictions : [JSON.parse(text)];
      if (got.length !== bookings.length) throw new Error(`${got.length} answers to ${bookings.length}`);
      const t = tally(sentIn);
      t.requests += 1;
      t.bookings += got.length;
      t.maxMs = Math.max(t.maxMs, performance.now() - started);
      for (const answer of got) answers.push({ phase: sentIn, answer });
    } catch (err) {
      tally(sentIn).failures += 1;
      failures.push(`${sentIn} ${batch ? 'batch' : 'single'}: ${(err as Error).message}`);
      await sleep(20); // a refused connection fails at once: do not spin
    } finally {
      inFlight.set(sentIn, (inFlight.get(sentIn) ?? 0) - 1);
    }
  }

  const loop = async (batch: boolean) => {
    while (!stopping) await once(batch);
  };
  const workers = [
    ...Array.from({ length: loops }, () => loop(false)),
    ...Array.from({ length: batchLoops }, () => loop(true)),
  ];

  return {
    failures,
    tally,
    /** Answers to the requests sent in `name` (all of them without a name). */
    answers: (name?: string) =>
      answers.filter((a) => name === undefined || a.phase === name).map((a) => a.answer),
    /** Tags the following requests with `name` and keeps loading until the phase lasted and saw enough requests. */
    async phase(name: string, { minMs = 1500, minRequests = 50 } = {}) {
      phase = name;
      const started = Date.now();
      const t = tally(name);
      while (Date.now() - started < minMs || t.requests + t.failures < minRequests) {
        // Well inside every test's own timeout, so the service's output is what the failure shows.
        if (Date.now() - started > 30_000)
          throw new Error(`phase ${name}: ${JSON.stringify(t)} after 30 s\n${service.output().slice(-3000)}`);
        await sleep(50);
      }
    },
    /** Waits until every request sent so far is answered (new ones count as 'settling'), before the next change. */
    async settle() {
      phase = 'settling';
      while ([...inFlight].some(([name, count]) => name !== 'settling' && count > 0)) await sleep(10);
    },
    /** Stops the loops and waits for the requests in flight; returns bookings answered overall. */
    async stop() {
      stopping = true;
      await Promise.all(workers);
      return [...tallies.values()].reduce((sum, t) => sum + t.bookings, 0);
    },
  };
}

const sourcesOf = (answers: Prediction[]) => new Set(answers.map((a) => a.weather.source));

const flagStatus = async (service: ServiceProcess) =>
  (await (await fetch(`http://127.0.0.1:${service.port}/v1/flags/status`)).json()) as FlagStatus & {
    models_loaded: string[];
  };

/**
 * The variant each booking id gets now, from one batch outside the load's tally: the flag status changes
 * before the provider has reloaded its own copy, so a test waits on these answers instead.
 */
async function variantsNow(service: ServiceProcess, ids: string[]) {
  const res = await fetch(`http://127.0.0.1:${service.port}/v1/predictions/batch`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ bookings: ids.map((id) => booking({ booking_id: id })) }),
  });
  if (res.status !== 200) throw new Error(`probe batch: HTTP ${res.status}`);
  return ((await res.json()) as { predictions: Prediction[] }).predictions.map((p) => p.variant);
}

// Weather bookings due now (current weather): half on a few hot cells that stay cached, half on a cell never
// asked before, so every phase both hits the cache and needs the API.
const HOT_CELLS = 20;
function weatherBooking(n: number) {
  const cell =
    n % 2 === 0
      ? { lat: 40 + (n % (2 * HOT_CELLS)) / 20, lon: 2 }
      : { lat: -60 + Math.floor(n / 2 / 1000) / 10, lon: -170 + (Math.floor(n / 2) % 1000) / 10 };
  return booking({
    booking_id: `wx-${n}`,
    scheduled_at: new Date().toISOString(),
    pickup: cell,
    dropoff: { lat: cell.lat + 0.03, lon: cell.lon },
  });
}

const countLines = (output: string, msg: string) =>
  output.split('\n').filter((line) => line.includes(`"msg":"${msg}`)).length;

describe('faults under load, on the real process', () => {
  it.skipIf(!hasRedisServer)(
    'Redis killed under load: every prediction answers, the cache errors are counted, Redis is used again once back',
    async () => {
      const redis = await startPrivateRedis();
      onTestFinished(() => redis.kill());
      const fake = await startFakeOpenWeatherMap();
      onTestFinished(() => fake.close());
      const service = await start({
        REDIS_URL: redis.url,
        OPENWEATHER_API_KEY: 'fault-test-key-redis',
        OPENWEATHER_BASE_URL: fake.url,
        WEATHER_DAILY_BUDGET: '1000000',
      });
      const load = startLoad(service, { makeBooking: weatherBooking });
      await load.phase('redis up', { minRequests: 200 });
      const atStart = await scrape(service);

      await redis.kill('SIGKILL');
      await load.phase('redis killed', { minMs: 3000, minRequests: 200 });
      const killed = await scrape(service);

      await redis.start(); // same port, empty: no persistence
      await eventually(
        () => countLines(service.output(), 'redis reachable again'),
        (n) => n > 0,
        20_000,
      );
      const reconnected = await scrape(service);
      await load.phase('redis back', { minMs: 2000, minRequests: 200 });
      const back = await scrape(service);
      await load.stop();
      const end = await scrape(service);

      expect(load.failures).toEqual([]);
      const cacheErrors = (m: MetricReading) => m('delay_weather_cache_errors_total');
      expect(cacheErrors(atStart)).toBe(0);
      expect(cacheErrors(killed)).toBeGreaterThan(0);
      // Once reconnected, Redis answers again: no new errors.
      expect(cacheErrors(back)).toBe(cacheErrors(reconnected));
      // Without Redis, lookups go on: new cells are fetched from the API, hot cells answer from the process's LRU.
      const killedSources = load.answers('redis killed').map((a) => a.weather.source);
      expect([...new Set(killedSources)].sort()).toEqual(expect.arrayContaining(['api', 'cache']));
      expect(killedSources.filter((s) => !['api', 'cache', 'default'].includes(s))).toEqual([]);
      // A default is only a lookup that gave up on WEATHER_TIMEOUT_MS (a starved CPU), never a Redis error.
      const timeouts = (m: MetricReading) => m('delay_weather_calls_refused_total', { reason: 'timeout' });
      expect(killedSources.filter((s) => s === 'default').length).toBeLessThanOrEqual(
        timeouts(end) - timeouts(atStart),
      );
      expect(killed('delay_weather_lookups_total', { outcome: 'miss' })).toBeGreaterThan(
        atStart('delay_weather_lookups_total', { outcome: 'miss' }),
      );
      // The restarted (empty) Redis holds what was looked up since: the shared cache is in use again.
      const client = new Redis(redis.url, { lazyConnect: true, maxRetriesPerRequest: 0 });
      try {
        await client.connect();
        expect((await client.keys('weather:v1:*')).length).toBeGreaterThan(0);
      } finally {
        client.disconnect();
      }
      expect(await service.stop('SIGTERM')).toBe(0);
      console.info(
        `redis: ${JSON.stringify({
          up: load.tally('redis up'),
          killed: load.tally('redis killed'),
          back: load.tally('redis back'),
          cache_errors: cacheErrors(back),
        })}`,
      );
    },
    120_000,
  );

  it.skipIf(!hasPostgresCluster)(
    'Postgres stopped and restarted under load: every prediction answers, and rows written + dropped = answered',
    async () => {
      const pg = await startPrivatePostgres();
      onTestFinished(() => pg.destroy());
      const service = await start({ DATABASE_URL: pg.url });
      const load = startLoad(service);
      await load.phase('postgres up', { minRequests: 200 });
      const atStart = await scrape(service);

      await pg.stop('fast');
      await load.phase('postgres stopped', { minMs: 4000, minRequests: 200 });
      const stopped = await scrape(service);

      await pg.start();
      await load.phase('postgres restarted', { minMs: 4000, minRequests: 200 });
      const answered = await load.stop();
      const atEnd = await scrape(service);
      // SIGTERM flushes the queue; what it could not write is logged and counted as dropped (shutdown).
      expect(await service.stop('SIGTERM')).toBe(0);

      expect(load.failures).toEqual([]);
      expect(atStart('delay_prediction_log_write_errors_total')).toBe(0);
      expect(stopped('delay_prediction_log_write_errors_total')).toBeGreaterThan(0);
      expect(countLines(service.output(), 'prediction log writing again')).toBeGreaterThan(0);
      // The service counted what the clients received.
      expect(atEnd('delay_predictions_total')).toBe(answered);

      const droppedAtShutdown = service
        .output()
        .split('\n')
        .filter((line) => line.includes('rows left unwritten at shutdown'))
        .reduce((sum, line) => sum + Number(JSON.parse(line).dropped), 0);
      const dropped = atEnd('delay_prediction_log_dropped_total') + droppedAtShutdown;
      const sql = postgres(pg.url, { max: 1, onnotice: () => {} });
      try {
        const [row] = await sql<{ n: number }[]>`select count(*)::int as n from predictions`;
        const rows = Number(row?.n);
        console.info(
          `postgres: ${JSON.stringify({
            answered,
            rows,
            dropped_queue_full: atEnd('delay_prediction_log_dropped_total', { reason: 'queue_full' }),
            dropped_at_shutdown: droppedAtShutdown,
            write_errors: atEnd('delay_prediction_log_write_errors_total'),
            up: load.tally('postgres up'),
            stopped: load.tally('postgres stopped'),
            restarted: load.tally('postgres restarted'),
          })}`,
        );
        expect(rows + dropped).toBe(answered);
      } finally {
        await sql.end({ timeout: 1 });
      }
    },
    180_000,
  );

  it('OpenWeatherMap slow, refusing (429, 401) and failing (500) under load: answers from cache or defaults', async () => {
    const key = 'fault-test-key-do-not-log';
    const fake = await startFakeOpenWeatherMap();
    onTestFinished(() => fake.close());
    const service = await start({
      OPENWEATHER_API_KEY: key,
      OPENWEATHER_BASE_URL: fake.url,
      WEATHER_DAILY_BUDGET: '1000000',
      WEATHER_TIMEOUT_MS: '300',
      // A slow call goes on past the lookup's 300 ms and fills the cache; long enough that the 5 s answers
      // count as 200s, not timeouts, so the circuit stays closed for the 429, 401 and 500 phases after it.
      WEATHER_API_TIMEOUT_MS: '8000',
      // Short, so the 500 phase reaches the API after the 401 pause, and longer than the 401 phase, so the
      // key is tried once in it.
      WEATHER_AUTH_RETRY_S: '5',
    });
    const load = startLoad(service, { makeBooking: weatherBooking });
    const calls = (m: MetricReading, status: string) => m('delay_weather_api_calls_total', { status });
    const refused = (m: MetricReading, reason: string) => m('delay_weather_calls_refused_total', { reason });

    await load.phase('ok', { minRequests: 200 });
    const m0 = await scrape(service);

    fake.setMode({ kind: 'slow', delayMs: 5000 });
    // Calls made before the switch may still answer (a booking of their cell waits on them): the requests in
    // flight at the switch are answered first, then a second apart, however loaded the machine.
    await load.settle();
    await load.phase('switching', { minMs: 1000 });
    await load.phase('slow', { minMs: 3000 });
    const m1 = await scrape(service);

    // The API answers again; the slow calls still in flight land in the cache.
    fake.setMode({ kind: 'ok' });
    await load.phase('recovered', { minMs: 6000 });

    fake.setMode({ kind: 'status', status: 429, retryAfterS: 2 });
    await load.phase('429', { minMs: 3000 });
    const m2 = await scrape(service);

    fake.setMode({ kind: 'status', status: 401 });
    await load.phase('401', { minMs: 2000 });
    const m3 = await scrape(service);

    fake.setMode({ kind: 'status', status: 500 });
    await load.phase('500', { minMs: 3000 });
    // The key is tried again after its pause, meets 500s, and the circuit breaker opens.
    const m4 = await eventually(
      () => scrape(service),
      (m) => refused(m, 'circuit_open') > 0,
      30_000,
    );
    await load.phase('circuit open', { minMs: 1000 });
    await load.stop();
    expect(await service.stop('SIGTERM')).toBe(0);

    expect(load.failures).toEqual([]);
    expect(sourcesOf(load.answers('ok'))).toContain('api');
    expect(sourcesOf(load.answers('recovered'))).toContain('api');
    for (const phase of ['slow', '429', '401', '500', 'circuit open']) {
      // Hot cells from the cache, new ones with defaults; never a wait for an answer that does not come.
      expect(sourcesOf(load.answers(phase)), phase).toEqual(new Set(['cache', 'default']));
    }
    // No prediction waited for the 5 s API (the lookup gives up after WEATHER_TIMEOUT_MS).
    expect(load.tally('slow').maxMs).toBeLessThan(5000);
    expect(refused(m1, 'timeout')).toBeGreaterThan(refused(m0, 'timeout'));
    expect(calls(m2, '429')).toBeGreaterThan(0);
    expect(refused(m2, 'rate_limited')).toBeGreaterThan(0);
    expect(calls(m3, '401')).toBeGreaterThan(0);
    expect(refused(m3, 'auth')).toBeGreaterThan(0);
    expect(calls(m4, '500')).toBeGreaterThan(0);
    // The 5 s answers were counted as 200s once they came (none of them timed out at 8 s).
    expect(calls(m4, 'timeout')).toBe(0);

    const output = service.output();
    expect(countLines(output, 'weather API rate limit: backing off')).toBeGreaterThan(0);
    expect(countLines(output, 'weather API rejected the key')).toBe(1);
    expect(countLines(output, 'weather API circuit opened')).toBeGreaterThan(0);
    expect(output).not.toContain(key);
    console.info(
      `weather: ${JSON.stringify({
        phases: Object.fromEntries(
          ['ok', 'slow', 'recovered', '429', '401', '500', 'circuit open'].map((p) => [p, load.tally(p)]),
        ),
        calls: Object.fromEntries(['200', '429', '401', '500'].map((s) => [s, calls(m4, s)])),
        refused: Object.fromEntries(
          ['timeout', 'rate_limited', 'auth', 'circuit_open'].map((r) => [r, refused(m4, r)]),
        ),
        rate_limit_log_lines: countLines(output, 'weather API rate limit: backing off'),
      })}`,
    );
  }, 180_000);

  it('flag file corrupted under load: the last good split stays, the refusals are counted, a good file applies', async () => {
    const file = flagsFile({ mlWeight: 50 }, scratch('delay-flags-'));
    const service = await start({ FLAGS_FILE: file, FLAGS_POLL_INTERVAL_MS: '100' });
    // A pool of booking ids seen again and again: the split on each id must not move while files are refused.
    const load = startLoad(service, { makeBooking: (n) => booking({ booking_id: `pool-${n % 400}` }) });
    await load.phase('50%', { minRequests: 200 });
    const variantOf = new Map(load.answers('50%').map((a) => [a.booking_id, a.variant]));
    const m0 = await scrape(service);

    writeFileSync(file, '{"flags": {"delay-model": '); // overwritten in place, as a careless edit would
    await eventually(
      () => flagStatus(service),
      (s) => !!s.last_error?.message.includes('not valid JSON'),
    );
    await load.phase('invalid JSON', { minMs: 2000 });

    // Valid JSON with the weights quoted: flagd's schema refuses it, but flagd-core alone (no strict
    // validation) would load it and send every booking to the default variant.
    writeFileSync(file, JSON.stringify(quotedWeightsDocument(50)));
    await eventually(
      () => flagStatus(service),
      (s) => !!s.last_error?.message.includes("flagd's schema"),
    );
    await load.phase('schema broken', { minMs: 2000 });
    const refusedStatus = await flagStatus(service);
    const m1 = await scrape(service);

    await load.settle();
    writeFlags(file, flagsDocument({ mlWeight: 20 }));
    await eventually(
      () => flagStatus(service),
      (s) => s.ml_percentage === 20 && s.last_error === null,
    );
    const seen = [...variantOf.keys()];
    const mlAt50 = seen.filter((id) => variantOf.get(id) === 'gbt-v2').length;
    await eventually(
      () => variantsNow(service, seen),
      (variants) => variants.filter((v) => v === 'gbt-v2').length < mlAt50,
    );
    await load.phase('20%', { minRequests: 200 });
    await load.stop();

    expect(load.failures).toEqual([]);
    expect(refusedStatus.ml_percentage).toBe(50);
    expect(m1('delay_flags_config_errors_total', { source: 'file' })).toBeGreaterThanOrEqual(
      m0('delay_flags_config_errors_total', { source: 'file' }) + 2,
    );
    expect(m1('delay_rollout_ml_percentage')).toBe(50);
    expect(new Set(variantOf.values())).toEqual(new Set(['gbt-v2', 'heuristic']));
    for (const phase of ['invalid JSON', 'schema broken']) {
      const moved = load.answers(phase).filter((a) => a.variant !== variantOf.get(a.booking_id));
      expect(moved, phase).toEqual([]);
    }
    // At 20% the ML cohort is a subset of the 50% one (the model is listed first in the split).
    const at20 = new Map(load.answers('20%').map((a) => [a.booking_id, a.variant]));
    const ml20 = [...at20].filter(([, v]) => v === 'gbt-v2').map(([id]) => id);
    const ml50 = [...variantOf].filter(([, v]) => v === 'gbt-v2').map(([id]) => id);
    expect(ml20.every((id) => variantOf.get(id) === undefined || variantOf.get(id) === 'gbt-v2')).toBe(true);
    expect(ml20.length).toBeGreaterThan(0);
    expect(ml20.length).toBeLessThan(ml50.length);
    expect((await scrape(service))('delay_rollout_ml_percentage')).toBe(20);
    expect(await service.stop('SIGTERM')).toBe(0);
    console.info(
      `flags: ${JSON.stringify({
        config_errors: m1('delay_flags_config_errors_total', { source: 'file' }),
        ml_ids_at_50: ml50.length,
        ml_ids_at_20: ml20.length,
        invalid: load.tally('invalid JSON'),
        broken: load.tally('schema broken'),
      })}`,
    );
  }, 120_000);

  it('model file corrupted: its bookings fall back (model_unavailable), the load error is counted, gbt-v2 serves on', async () => {
    const models = scratch('delay-models-');
    for (const f of ['gbt-v2.onnx', 'gbt-v2.json']) copyFileSync(join('models', f), join(models, f));
    const card = JSON.parse(readFileSync('models/gbt-v2.json', 'utf8'));
    writeFileSync(
      join(models, 'gbt-v9.json'),
      JSON.stringify({ ...card, version: 'gbt-v9', onnx: { ...card.onnx, file: 'gbt-v9.onnx' } }),
    );
    writeFileSync(join(models, 'gbt-v9.onnx'), randomBytes(64 * 1024));
    const file = flagsFile({ mlWeight: 50 }, scratch('delay-flags-'));
    const service = await start({
      FLAGS_FILE: file,
      FLAGS_POLL_INTERVAL_MS: '100',
      MODELS_DIR: models,
      // The fault under test is the corrupt file: a generous inference budget keeps a CPU-starved test box
      // from turning gbt-v2 answers into timeouts.
      ML_TIMEOUT_MS: '10000',
    });
    const load = startLoad(service);
    await load.phase('gbt-v2', { minRequests: 200 });

    const doc = flagsDocument({ mlWeight: 50 });
    const model = doc.flags['delay-model'] as { variants: Record<string, string>; targeting: unknown };
    model.variants['gbt-v9'] = 'gbt-v9';
    model.targeting = {
      fractional: [
        ['gbt-v2', 30],
        ['gbt-v9', 30],
        ['heuristic', 40],
      ],
    };
    writeFlags(file, doc); // temp file renamed over the original
    await eventually(
      () => flagStatus(service),
      (s) => s.model_versions.includes('gbt-v9'),
    );
    await load.phase('gbt-v9 corrupt', { minMs: 3000, minRequests: 200 });
    await load.stop();
    const m = await scrape(service);
    const status = await flagStatus(service);

    expect(load.failures).toEqual([]);
    const answers = load.answers();
    const v9 = answers.filter((a) => a.variant === 'gbt-v9');
    const v1 = answers.filter((a) => a.variant === 'gbt-v2');
    expect(v9.length).toBeGreaterThan(50);
    expect(v9.filter((a) => a.source !== 'heuristic' || a.fallback_reason !== 'model_unavailable')).toEqual(
      [],
    );
    expect(v1.filter((a) => a.source !== 'ml' || a.model_version !== 'gbt-v2')).toEqual([]);
    expect(v1.filter((a) => a.fallback_reason !== null)).toEqual([]);
    expect(m('delay_models_load_errors_total', { model_version: 'gbt-v9' })).toBeGreaterThanOrEqual(1);
    expect(m('delay_models_load_errors_total', { model_version: 'gbt-v2' })).toBe(0);
    // Every gbt-v9 booking the clients saw fall back was counted, and none of gbt-v2's.
    expect(
      m('delay_prediction_fallbacks_total', { model_version: 'gbt-v9', reason: 'model_unavailable' }),
    ).toBe(v9.length);
    expect(m('delay_prediction_fallbacks_total', { model_version: 'gbt-v2' })).toBe(0);
    expect(status.models_loaded).toEqual(['gbt-v2']);
    expect(service.output()).toMatch(/"model_version":"gbt-v9".*"msg":"model failed to load/);
    expect(await service.stop('SIGTERM')).toBe(0);
    console.info(
      `model: ${JSON.stringify({
        gbt_v9_answers: v9.length,
        gbt_v1_answers: v1.length,
        load_errors: m('delay_models_load_errors_total', { model_version: 'gbt-v9' }),
      })}`,
    );
  }, 120_000);

  it('20 concurrent webhook posts of 1,000 duplicate rollback alerts under load: one rollback, ML at 0%', async () => {
    const token = 'fault-test-webhook-token-0123456789';
    const file = flagsFile({ mlWeight: 50 }, scratch('delay-flags-'));
    const dataDir = await scratchData();
    const service = await start({
      FLAGS_FILE: file,
      FLAGS_POLL_INTERVAL_MS: '100',
      ALERTMANAGER_WEBHOOK_TOKEN: token,
      DATA_DIR: dataDir,
    });
    const load = startLoad(service);
    await load.phase('50%', { minRequests: 200 });

    const alert = {
      status: 'firing',
      labels: { alertname: 'DelayModelLosingToRulesFast', severity: 'critical', rollback: 'true' },
      annotations: { summary: 'ML MAE 6.00 min over 30 min for gbt-v2' },
      fingerprint: 'fault-test',
    };
    const body = JSON.stringify({
      version: '4',
      status: 'firing',
      receiver: 'rollback-webhook',
      alerts: Array.from({ length: 1000 }, () => alert),
    });
    const posts = await Promise.all(
      Array.from({ length: 20 }, async () => {
        const res = await fetch(`http://127.0.0.1:${service.port}/v1/webhooks/alertmanager`, {
          method: 'POST',
          headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
          body,
          signal: AbortSignal.timeout(120_000),
        });
        return { status: res.status, body: (await res.json()) as { results: { outcome: string }[] } };
      }),
    );
    await eventually(
      () => flagStatus(service),
      (s) => s.ml_percentage === 0,
    );
    const probes = Array.from({ length: 50 }, (_, i) => `probe-${i}`);
    await eventually(
      () => variantsNow(service, probes),
      (variants) => variants.every((v) => v === 'heuristic'),
    );
    await load.phase('rolled back', { minRequests: 200 });
    await load.stop();
    const m = await scrape(service);

    expect(load.failures).toEqual([]);
    expect(posts.map((p) => p.status)).toEqual(Array(20).fill(200));
    const outcomes = posts.flatMap((p) => p.body.results.map((r) => r.outcome));
    expect(outcomes).toHaveLength(20_000);
    expect(outcomes.filter((o) => o === 'rolled_back')).toHaveLength(1);
    expect(outcomes.filter((o) => o === 'already_rolled_back')).toHaveLength(19_999);
    expect(parseFlagConfig(readFileSync(file, 'utf8')).mlPercentage).toBe(0);
    expect(readdirSync(dirname(file))).toEqual(['flags.json']);
    expect(m('delay_rollout_rollbacks_total')).toBe(1);
    expect(m('delay_rollout_rollbacks_total', { alertname: 'DelayModelLosingToRulesFast' })).toBe(1);
    expect(m('delay_webhook_alerts_total', { outcome: 'rolled_back' })).toBe(1);
    expect(m('delay_webhook_alerts_total', { outcome: 'already_rolled_back' })).toBe(19_999);
    expect(countLines(service.output(), 'rollout changed')).toBe(1);
    expect(load.answers('50%').some((a) => a.source === 'ml')).toBe(true);
    expect(load.answers('rolled back').filter((a) => a.variant !== 'heuristic')).toEqual([]);
    // One audited change: the embedded database is readable once the service has stopped.
    expect(await service.stop('SIGTERM')).toBe(0);
    const database = await openDatabase({ dataDir });
    try {
      const changes = await database.db.select().from(flagChanges);
      expect(changes.map((c) => [c.action, c.previousWeight, c.newWeight])).toEqual([['rollback', 50, 0]]);
    } finally {
      await database.close();
    }
    console.info(
      `rollback: ${JSON.stringify({ before: load.tally('50%'), after: load.tally('rolled back') })}`,
    );
  }, 180_000);
});
