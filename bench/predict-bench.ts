import { execFileSync, spawn } from 'node:child_process';
import { readFileSync, rmSync } from 'node:fs';
import { sql } from 'drizzle-orm';
import { Redis } from 'ioredis';
import { predictions } from '../db/schema.js';
import { loadConfig } from '../service/config/config.js';
import { startFlagService } from '../service/flags/flag-service.js';
import { loadOnnxModel } from '../service/models/onnx-model.js';
import { EVENT_LOOP_SAMPLING_MS } from '../service/telemetry/otel.js';
import { freshPostgres, postgresAvailable } from '../service/test-support/databases.js';
import { startFakeOpenWeatherMap } from '../service/test-support/fake-openweathermap.js';
import { booking, flagsFile, silentLogger, tempDir, testMetrics } from '../service/test-support/harness.js';
import { startOtlpSink } from '../service/test-support/otlp-sink.js';
import {
  freePort,
  scrapeMetrics,
  startArguments,
  startService,
  waitForReady,
} from '../service/test-support/process.js';
import { envNumber, type LoadResult, load, median } from './load.js';
import { microsPerUnit } from './timing.js';

/*
 * npm run bench             ONNX inference per row and the delay-model flag evaluation per booking (with the
 *                           batch endpoint's ceiling on one core they give); the full prediction path (flags,
 *                           cached weather through Redis, ONNX for every booking, metrics, OTLP tracing at the
 *                           busy-instance sampling ratio and at every trace, the database log) against a bare
 *                           Hono handler parsing the same JSON, and the same handler scoring one row with the
 *                           model (the ceiling of the full path), in alternating rounds (each after 2 s of load
 *                           whose p99 is reported apart: a target's first seconds after sitting idle); then the
 *                           batch endpoint. Prints JSON.
 *   BENCH_DURATION_S (10) per round, BENCH_ROUNDS (3), BENCH_CONNECTIONS (32), BENCH_BATCH_CONNECTIONS (2).
 *   BENCH_NODES: node binaries, comma-separated, to run the full path (TRACE_SAMPLE_RATIO=0.1) and the bare
 *   handler on as well, in the same alternating rounds; `by_node` reports each runtime beside the one running
 *   the benchmark (e.g. BENCH_NODES=/usr/bin/node on a machine whose own node is an older line).
 * npm run bench -- --soak   the same service at a fixed rate: BENCH_SOAK_MINUTES (10) at BENCH_SOAK_RATE (200)
 *                           predictions/s after a 1-minute warm-up; RSS over time, and every prediction answered
 *                           found in the database after SIGTERM.
 */
const durationS = envNumber('BENCH_DURATION_S', 10);
const rounds = envNumber('BENCH_ROUNDS', 3);
const connections = envNumber('BENCH_CONNECTIONS', 32);
const batchConnections = envNumber('BENCH_BATCH_CONNECTIONS', 2);
/** Other runtimes to compare, by version; the one running the benchmark is measured anyway. */
const otherNodes = [
  ...new Map(
    (process.env.BENCH_NODES ?? '')
      .split(',')
      .filter(Boolean)
      .map((path) => [execFileSync(path, ['--version'], { encoding: 'utf8' }).trim(), path] as const)
      .filter(([version]) => version !== process.version),
  ),
].map(([version, path]) => ({ version, path }));
const soak = process.argv.includes('--soak');
/** Seconds of load before each measured round, its p99 reported as `after_idle_p99_ms`. */
const AFTER_IDLE_S = 2;
/** Bookings in each request of the batch endpoint's round. */
const BATCH_BOOKINGS = 1000;

/** Bookings due within the hour (current weather) in eight 0.1° cells: after the first calls, cache hits. */
const scheduledAt = new Date(Date.now() + 30 * 60_000).toISOString();
const bookingBody = (n: number) =>
  booking({
    booking_id: `bench-${n}`,
    scheduled_at: scheduledAt,
    pickup: { lat: 48.81 + (n % 8) * 0.1, lon: 2.35 },
    driver_active_bookings: n % 4,
    distance_km: n % 25,
  });

/** The setting a busy instance runs (docs/adr/0005); every trace is measured beside it. */
const TRACE_SAMPLE_RATIO = 0.1;

async function startFullService(traceSampleRatio = TRACE_SAMPLE_RATIO, node = process.execPath) {
  const fake = await startFakeOpenWeatherMap();
  const sink = await startOtlpSink();
  const database = (await postgresAvailable()) ? await freshPostgres() : undefined;
  // Redis database 13, emptied: the weather cache and budget start cold and shared with nothing else.
  const redis = new Redis('redis://127.0.0.1:6379/13', { lazyConnect: true, maxRetriesPerRequest: 1 });
  const redisUrl = await redis
    .connect()
    .then(() => redis.flushdb())
    .then(() => 'redis://127.0.0.1:6379/13')
    .catch(() => undefined);
  redis.disconnect();
  const service = await startService(
    {
      FLAGS_FILE: flagsFile({ mlWeight: 100 }, tempDir('delay-bench-')),
      LOG_LEVEL: 'warn',
      OPENWEATHER_API_KEY: 'bench-key-0123456789',
      OPENWEATHER_BASE_URL: fake.url,
      OTEL_EXPORTER_OTLP_ENDPOINT: sink.url,
      TRACE_SAMPLE_RATIO: String(traceSampleRatio),
      ...(redisUrl ? { REDIS_URL: redisUrl } : {}),
      ...(database ? { DATABASE_URL: database.url } : {}),
    },
    { node },
  );
  // Starts are slow on a loaded machine; the rounds measure the service once it is up.
  await waitForReady(service, 120_000);
  let closed: Promise<void> | undefined;
  return {
    service,
    parts: {
      prediction_log: database ? 'postgres' : 'pglite',
      weather_l2: redisUrl ? 'redis' : 'none (Redis not reachable)',
      traces: `OTLP/HTTP to a local sink, TRACE_SAMPLE_RATIO=${traceSampleRatio}`,
      model: 'gbt-v2 for every booking (ML at 100%)',
    },
    sink,
    async rowsWritten() {
      if (!database) return null;
      const [r] = await database.db.select({ n: sql<number>`count(*)::int` }).from(predictions);
      return Number(r?.n);
    },
    close() {
      closed ??= (async () => {
        if (service.child.exitCode === null) await service.stop('SIGTERM');
        await Promise.all([fake.close(), sink.close(), database?.close()]);
      })();
      return closed;
    },
  };
}

/**
 * The gauges and counters the benchmark reports, from the service's own /metrics. The event-loop figures cover
 * the time since the previous scrape, and are reported beyond the sampling interval they include.
 */
async function scrape(metricsPort: number) {
  const metric = await scrapeMetrics(metricsPort);
  const ms = (seconds: number) => Math.round(seconds * 1e5) / 100;
  const delay = (name: string) => ms(Math.max(0, metric(name) - EVENT_LOOP_SAMPLING_MS / 1000));
  return {
    event_loop_delay_p99_ms: delay('nodejs_eventloop_delay_p99'),
    event_loop_delay_max_ms: delay('nodejs_eventloop_delay_max'),
    rss_mb: Math.round(metric('process_memory_usage') / 1e5) / 10,
    log_dropped: metric('delay_prediction_log_dropped_total'),
  };
}

/** Microseconds per row for calls of `batch` rows (median of 5 runs of `calls` calls). */
async function inferenceMicrosPerRow(batch: number, calls: number) {
  const model = await loadOnnxModel('models', 'gbt-v2');
  const fixture = JSON.parse(readFileSync('models/gbt-v2.parity.json', 'utf8')) as { features: number[][] };
  const width = fixture.features[0]?.length ?? 0;
  const rows = new Float32Array(batch * width);
  for (let i = 0; i < batch; i++)
    rows.set(fixture.features[i % fixture.features.length] as number[], i * width);
  return microsPerUnit(calls * batch, async () => {
    for (let c = 0; c < calls; c++) await model.score(rows, batch);
  });
}

/**
 * Microseconds per booking of the service's own `delay-model` evaluation (OpenFeature client, the bench's split,
 * the service's default configuration), in groups of a batch's bookings evaluated at once as the batch endpoint
 * does.
 */
async function flagEvaluationMicros(groups: number) {
  const dir = tempDir('delay-bench-flags-');
  const { flags: defaults } = loadConfig({}, { FLAGS_FILE: flagsFile({ mlWeight: 100 }, dir) });
  const flags = await startFlagService({
    flags: defaults,
    logger: silentLogger,
    metrics: testMetrics().metrics,
  });
  try {
    return await microsPerUnit(groups * BATCH_BOOKINGS, async (run) => {
      for (let g = 0; g < groups; g++)
        await Promise.all(
          Array.from({ length: BATCH_BOOKINGS }, (_, i) =>
            flags.modelVariant(`bench-${run}-${g}-${i}`, { priority: 'standard' }),
          ),
        );
    });
  } finally {
    await flags.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

function summary<T extends LoadResult>(rs: T[]) {
  const pick = (key: 'requests_per_s' | 'p50_ms' | 'p95_ms' | 'p99_ms') => median(rs.map((r) => r[key]));
  return {
    requests_per_s: Math.round(pick('requests_per_s')),
    p50_ms: pick('p50_ms'),
    p95_ms: pick('p95_ms'),
    p99_ms: pick('p99_ms'),
    non_2xx: rs.reduce((s, r) => s + r.non_2xx, 0),
    errors: rs.reduce((s, r) => s + r.errors, 0),
    rounds: rs,
  };
}

async function waitForPort(port: number) {
  for (let i = 0; i < 100; i++) {
    try {
      await fetch(`http://127.0.0.1:${port}/`);
      return;
    } catch {
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  throw new Error(`bare server did not start on ${port}`);
}

async function throughput() {
  const inference = {
    single_row_us: await inferenceMicrosPerRow(1, 2000),
    batch_1000_us_per_row: await inferenceMicrosPerRow(1000, 20),
  };
  const flagEvaluationUs = await flagEvaluationMicros(20);
  // Everything started is stopped at the end, even when a later start fails.
  const running: (() => Promise<unknown> | boolean)[] = [];
  const startBare = async (mode: string[] = [], node = process.execPath) => {
    const port = await freePort();
    // The service's node options (npm start's arguments without its script): both run on the same V8 settings.
    const child = spawn(
      node,
      [...startArguments().slice(0, -1), 'bench/bare-server.ts', String(port), ...mode],
      {
        stdio: 'inherit',
      },
    );
    running.push(() => child.kill('SIGTERM'));
    await waitForPort(port);
    return { port };
  };
  const startTarget = async (traceSampleRatio?: number, node?: string) => {
    const target = await startFullService(traceSampleRatio, node);
    running.push(target.close);
    return target;
  };
  const single = (port: number, seconds = durationS) =>
    load({
      url: `http://127.0.0.1:${port}/v1/predictions`,
      connections,
      durationS: seconds,
      body: (n) => JSON.stringify(bookingBody(n)),
    });
  // Each target sits idle while the others run; its first seconds of load after that have a longer tail
  // (measured: docs/performance.md), reported apart from the steady window the round measures.
  const round = async (port: number) => {
    const afterIdle = await single(port, AFTER_IDLE_S);
    return { ...(await single(port)), after_idle_p99_ms: afterIdle.p99_ms };
  };
  type Round = LoadResult & { after_idle_p99_ms: number };
  const afterIdle = (rs: Round[]) => median(rs.map((r) => r.after_idle_p99_ms));
  type ServiceRound = Round & Awaited<ReturnType<typeof scrape>>;
  type Service = Awaited<ReturnType<typeof startFullService>>;
  // A scrape before the round starts the event-loop window the one after it reads.
  const measured = async (target: Service) => {
    await scrape(target.service.metricsPort);
    return { ...(await round(target.service.port)), ...(await scrape(target.service.metricsPort)) };
  };
  try {
    const full = await startTarget();
    const allTraces = await startTarget(1);
    const bare = await startBare();
    const bareOnnx = await startBare(['onnx']);
    const others = [];
    for (const node of otherNodes)
      others.push({
        ...node,
        full: await startTarget(TRACE_SAMPLE_RATIO, node.path),
        bare: await startBare([], node.path),
        serviceRounds: [] as ServiceRound[],
        bareRounds: [] as Round[],
      });
    const serviceRounds: ServiceRound[] = [];
    const allTracesRounds: ServiceRound[] = [];
    const bareRounds: Round[] = [];
    const bareOnnxRounds: Round[] = [];
    // Warm-up of each, discarded.
    for (const port of [
      full.service.port,
      allTraces.service.port,
      bare.port,
      bareOnnx.port,
      ...others.flatMap((o) => [o.full.service.port, o.bare.port]),
    ])
      await single(port);
    for (let i = 0; i < rounds; i++) {
      bareRounds.push(await round(bare.port));
      bareOnnxRounds.push(await round(bareOnnx.port));
      serviceRounds.push(await measured(full));
      allTracesRounds.push(await measured(allTraces));
      for (const other of others) {
        other.bareRounds.push(await round(other.bare.port));
        other.serviceRounds.push(await measured(other.full));
      }
    }
    await allTraces.close();
    for (const other of others) await other.full.close();
    const batchBody = JSON.stringify({
      bookings: Array.from({ length: BATCH_BOOKINGS }, (_, i) => bookingBody(i)),
    });
    const droppedBefore = (await scrape(full.service.metricsPort)).log_dropped;
    // That scrape also started the batch round's event-loop window.
    const batchRound = await load({
      url: `http://127.0.0.1:${full.service.port}/v1/predictions/batch`,
      connections: batchConnections,
      durationS,
      body: () => batchBody,
    });
    const after = await scrape(full.service.metricsPort);

    const bareSummary = summary(bareRounds);
    const withRatio = <T extends { requests_per_s: number }>(s: T, base = bareSummary.requests_per_s) => ({
      ...s,
      throughput_ratio: Math.round((s.requests_per_s / base) * 1000) / 1000,
    });
    const serviceSummary = (target: Service, rs: ServiceRound[], base?: number) =>
      withRatio(
        {
          parts: target.parts,
          ...summary(rs),
          after_idle_p99_ms: afterIdle(rs),
          event_loop_delay_p99_ms: median(rs.map((r) => r.event_loop_delay_p99_ms)),
          rss_mb: Math.max(...rs.map((r) => r.rss_mb)),
          traces_exported: target.sink.stats(),
        },
        base,
      );
    // Each runtime's full path against its own bare handler, from the same rounds.
    const byNode = (node: string, target: Service, rs: ServiceRound[], bareRs: Round[]) => {
      const bareOnNode = summary(bareRs);
      const { rounds: _, ...fullPath } = serviceSummary(target, rs, bareOnNode.requests_per_s);
      const { rounds: __, ...bareHono } = bareOnNode;
      const perRound = (r: { requests_per_s: number }[]) => r.map((x) => x.requests_per_s);
      return {
        node,
        full_path: { ...fullPath, rounds_requests_per_s: perRound(rs) },
        bare_hono: { ...bareHono, rounds_requests_per_s: perRound(bareRs) },
      };
    };
    return {
      node: process.version,
      ...(others.length > 0
        ? {
            by_node: Object.fromEntries([
              [process.version, byNode(process.execPath, full, serviceRounds, bareRounds)],
              ...others.map((o) => [o.version, byNode(o.path, o.full, o.serviceRounds, o.bareRounds)]),
            ]),
          }
        : {}),
      connections,
      duration_s_per_round: durationS,
      rounds,
      onnx_inference: inference,
      delay_model_flag_evaluation_us: flagEvaluationUs,
      service_full_path: serviceSummary(full, serviceRounds),
      service_full_path_every_trace: serviceSummary(allTraces, allTracesRounds),
      bare_hono: { ...bareSummary, after_idle_p99_ms: afterIdle(bareRounds) },
      bare_hono_with_onnx: withRatio({
        ...summary(bareOnnxRounds),
        after_idle_p99_ms: afterIdle(bareOnnxRounds),
      }),
      batch_endpoint: {
        bookings_per_request: BATCH_BOOKINGS,
        connections: batchConnections,
        // From the answered requests: load()'s requests_per_s is rounded to a whole request (of 1,000 bookings here).
        predictions_per_s: Math.round((batchRound.ok * BATCH_BOOKINGS) / batchRound.duration_s),
        // One core doing nothing per booking but the two steps the design fixes: the flag evaluation through
        // the OpenFeature client and one row of the model (single-threaded ONNX Runtime), in calls of 1,000.
        ceiling_predictions_per_s_per_core: Math.round(
          1e6 / (inference.batch_1000_us_per_row + flagEvaluationUs),
        ),
        ...batchRound,
        event_loop_delay_p99_ms: after.event_loop_delay_p99_ms,
        rss_mb: after.rss_mb,
        prediction_log_dropped: after.log_dropped - droppedBefore,
      },
    };
  } finally {
    await Promise.all(running.map((stop) => stop()));
  }
}

async function soakRun() {
  const minutes = envNumber('BENCH_SOAK_MINUTES', 10);
  const rate = envNumber('BENCH_SOAK_RATE', 200);
  const full = await startFullService();
  const samples: { at_s: number; rss_mb: number; event_loop_delay_p99_ms: number }[] = [];
  const started = Date.now();
  const sampler = setInterval(() => {
    scrape(full.service.metricsPort)
      .then((s) => samples.push({ at_s: Math.round((Date.now() - started) / 1000), ...s }))
      .catch(() => undefined);
  }, 30_000);
  let answered = 0;
  let failed = 0;
  try {
    const run = (durationS: number, offset: number) =>
      load({
        url: `http://127.0.0.1:${full.service.port}/v1/predictions`,
        connections: 8,
        durationS,
        overallRate: rate,
        body: (n) => JSON.stringify(bookingBody(offset + n)),
      });
    const warmUp = await run(60, 0);
    const atStart = await scrape(full.service.metricsPort);
    const steady = await run(minutes * 60, 10_000_000);
    const atEnd = await scrape(full.service.metricsPort);
    clearInterval(sampler);
    answered = warmUp.ok + steady.ok;
    failed = warmUp.non_2xx + warmUp.errors + steady.non_2xx + steady.errors;
    const exitCode = await full.service.stop('SIGTERM');
    const rows = await full.rowsWritten();
    return {
      node: process.version,
      parts: full.parts,
      rate_per_s: rate,
      minutes,
      steady: { ...steady, ok: undefined },
      rss_mb_after_warm_up: atStart.rss_mb,
      rss_mb_at_end: atEnd.rss_mb,
      rss_growth_pct: Math.round(((atEnd.rss_mb - atStart.rss_mb) / atStart.rss_mb) * 1000) / 10,
      rss_samples: samples,
      predictions_answered: answered,
      predictions_failed: failed,
      rows_in_database_after_sigterm: rows,
      prediction_log_dropped: atEnd.log_dropped,
      // The client stops counting at the end of its window; the server may answer (and log) a few more.
      missing_from_database: rows === null ? null : Math.max(0, answered - rows - atEnd.log_dropped),
      service_exit_code: exitCode,
    };
  } finally {
    clearInterval(sampler);
    await full.close();
  }
}

console.log(JSON.stringify(soak ? await soakRun() : await throughput(), null, 2));
