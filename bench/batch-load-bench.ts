import { freshPostgres, postgresAvailable } from '../service/test-support/databases.js';
import { booking, flagsFile, tempDir } from '../service/test-support/harness.js';
import {
  type MetricReading,
  scrapeMetrics,
  startService,
  waitForReady,
} from '../service/test-support/process.js';
import { envNumber, median } from './load.js';

/*
 * npm run bench:batch-load   ML at 100% on the real service (`npm start`, Postgres prediction log when
 *                            127.0.0.1:5432 answers), single predictions from BENCH_SINGLE_CLIENTS loops, alone
 *                            and then beside BENCH_BATCH_CLIENTS loops posting batches of BENCH_BATCH_SIZE
 *                            bookings: the share of ML-assigned bookings that fell back (by reason, from the
 *                            answers and from delay_prediction_fallbacks_total), the single predictions' p50/p95/
 *                            p99, the batches answered and shed (503), the event loop's worst delay. Prints JSON.
 *   BENCH_DURATION_S (20) per phase, BENCH_BATCH_CLIENTS (4), BENCH_BATCH_SIZE (1000), BENCH_SINGLE_CLIENTS (4),
 *   BENCH_ROUNDS (2): phases alternate alone / under batch load, each after 2 s of warm-up load.
 */
const durationS = envNumber('BENCH_DURATION_S', 20);
const batchClients = envNumber('BENCH_BATCH_CLIENTS', 4);
const batchSize = envNumber('BENCH_BATCH_SIZE', 1000);
const singleClients = envNumber('BENCH_SINGLE_CLIENTS', 4);
const rounds = envNumber('BENCH_ROUNDS', 2);

interface Answer {
  source: string;
  fallback_reason: string | null;
  variant: string;
}

const round1 = (x: number) => Math.round(x * 10) / 10;
const percentile = (xs: number[], p: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length === 0 ? 0 : (s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)] as number);
};

let nextId = 0;
/** Bookings spread over a day and a region, so the model sees varied rows (weather off: neutral defaults). */
function bookingBody() {
  const n = nextId++;
  return booking({
    booking_id: `load-${n}`,
    scheduled_at: new Date(Date.UTC(2026, 10, 25, n % 24, n % 60)).toISOString(),
    pickup: { lat: 48.8 + (n % 50) / 500, lon: 2.3 + (n % 37) / 500 },
    dropoff: { lat: 48.85 + (n % 29) / 500, lon: 2.35 + (n % 41) / 500 },
    driver_active_bookings: n % 5,
  });
}

interface Tally {
  latenciesMs: number[];
  bookings: number;
  fallbacks: Map<string, number>;
  shed: number;
  failures: string[];
}
const newTally = (): Tally => ({ latenciesMs: [], bookings: 0, fallbacks: new Map(), shed: 0, failures: [] });

async function loop(
  url: string,
  batch: boolean,
  tally: Tally,
  until: () => boolean,
  stopAll: { stopped: boolean },
) {
  while (!until() && !stopAll.stopped) {
    const bookings = Array.from({ length: batch ? batchSize : 1 }, bookingBody);
    const started = performance.now();
    try {
      const res = await fetch(batch ? `${url}/batch` : url, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(batch ? { bookings } : bookings[0]),
        signal: AbortSignal.timeout(60_000),
      });
      const text = await res.text();
      if (res.status === 503 || res.status === 429) {
        tally.shed += 1;
        const wait = Number(res.headers.get('retry-after') ?? 1);
        await new Promise((r) => setTimeout(r, Math.min(wait, 5) * 1000));
        continue;
      }
      if (res.status !== 200) throw new Error(`HTTP ${res.status} ${text.slice(0, 200)}`);
      tally.latenciesMs.push(performance.now() - started);
      const answers: Answer[] = batch ? JSON.parse(text).predictions : [JSON.parse(text)];
      tally.bookings += answers.length;
      for (const a of answers) {
        if (a.variant === 'heuristic') continue;
        const reason = a.fallback_reason ?? 'none';
        tally.fallbacks.set(reason, (tally.fallbacks.get(reason) ?? 0) + 1);
      }
    } catch (err) {
      tally.failures.push((err as Error).message);
      await new Promise((r) => setTimeout(r, 50));
    }
  }
}

function report(t: Tally) {
  const assigned = [...t.fallbacks.values()].reduce((a, b) => a + b, 0);
  const fellBack = assigned - (t.fallbacks.get('none') ?? 0);
  return {
    requests: t.latenciesMs.length,
    bookings: t.bookings,
    fallback_share: assigned === 0 ? 0 : Math.round((fellBack / assigned) * 10_000) / 10_000,
    fallbacks_by_reason: Object.fromEntries([...t.fallbacks].filter(([reason]) => reason !== 'none')),
    p50_ms: round1(percentile(t.latenciesMs, 50)),
    p95_ms: round1(percentile(t.latenciesMs, 95)),
    p99_ms: round1(percentile(t.latenciesMs, 99)),
    shed_503: t.shed,
    failures: t.failures.length,
    ...(t.failures.length > 0 ? { first_failure: t.failures[0] } : {}),
  };
}

async function main() {
  const database = (await postgresAvailable()) ? await freshPostgres() : undefined;
  const service = await startService({
    FLAGS_FILE: flagsFile({ mlWeight: 100, weatherEnrichment: false }, tempDir('delay-bench-')),
    LOG_LEVEL: 'warn',
    ...(database ? { DATABASE_URL: database.url } : {}),
  });
  try {
    await waitForReady(service, 120_000);
    const url = `http://127.0.0.1:${service.port}/v1/predictions`;
    const stopAll = { stopped: false };
    const phase = async (withBatches: boolean, seconds: number) => {
      const singles = newTally();
      const batches = newTally();
      const end = Date.now() + seconds * 1000;
      const until = () => Date.now() >= end;
      const before = await scrapeMetrics(service.metricsPort);
      await Promise.all([
        ...Array.from({ length: singleClients }, () => loop(url, false, singles, until, stopAll)),
        ...(withBatches
          ? Array.from({ length: batchClients }, () => loop(url, true, batches, until, stopAll))
          : []),
      ]);
      const after = await scrapeMetrics(service.metricsPort);
      // A counter not yet exported (no prediction so far) reads 0.
      const read = (m: MetricReading, name: string, labels: Record<string, string>) => {
        try {
          return m(name, labels);
        } catch {
          return 0;
        }
      };
      const counted = (name: string, labels: Record<string, string> = {}) =>
        read(after, name, labels) - read(before, name, labels);
      const mlAssigned = counted('delay_predictions_total', { variant: 'gbt-v2' });
      return {
        singles: report(singles),
        ...(withBatches ? { batches: report(batches) } : {}),
        // What the rules read: the fallback counter over ML-assigned predictions, whatever the endpoint.
        metrics: {
          ml_assigned: mlAssigned,
          fallbacks_total: counted('delay_prediction_fallbacks_total'),
          fallback_ratio:
            mlAssigned === 0
              ? 0
              : Math.round((counted('delay_prediction_fallbacks_total') / mlAssigned) * 10_000) / 10_000,
          event_loop_delay_max_ms: round1(after('nodejs_eventloop_delay_max') * 1000),
        },
      };
    };
    const alone: Awaited<ReturnType<typeof phase>>[] = [];
    const underLoad: Awaited<ReturnType<typeof phase>>[] = [];
    for (let r = 0; r < rounds; r++) {
      await phase(false, 2);
      alone.push(await phase(false, durationS));
      await phase(true, 2);
      underLoad.push(await phase(true, durationS));
    }
    const med = (xs: number[]) => round1(median(xs));
    console.log(
      JSON.stringify(
        {
          node: process.version,
          prediction_log: database ? 'postgres' : 'pglite',
          duration_s_per_phase: durationS,
          rounds,
          single_clients: singleClients,
          batch_clients: batchClients,
          batch_size: batchSize,
          summary: {
            single_p95_ms_alone: med(alone.map((p) => p.singles.p95_ms)),
            single_p95_ms_under_batch_load: med(underLoad.map((p) => p.singles.p95_ms)),
            single_fallback_share_under_batch_load: median(underLoad.map((p) => p.singles.fallback_share)),
            batch_fallback_share: median(underLoad.map((p) => p.batches?.fallback_share ?? 0)),
            fallback_ratio_in_metrics_under_batch_load: median(
              underLoad.map((p) => p.metrics.fallback_ratio),
            ),
            batch_bookings_answered_per_s: med(underLoad.map((p) => (p.batches?.bookings ?? 0) / durationS)),
            batches_shed_503: underLoad.reduce((s, p) => s + (p.batches?.shed_503 ?? 0), 0),
          },
          alone,
          under_batch_load: underLoad,
        },
        null,
        2,
      ),
    );
  } finally {
    await service.stop('SIGTERM');
    await database?.close();
  }
}

await main();
