import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import autocannon from 'autocannon';
import { loadOnnxModel } from '../service/models/onnx-model.js';
import { freshPostgres, postgresAvailable } from '../service/test-support/databases.js';
import { booking, flagsDocument, tempDir, writeFlags } from '../service/test-support/harness.js';
import { freePort, startService, waitForReady } from '../service/test-support/process.js';

/*
 * ONNX inference per row (single rows and batches of 1,000, in process), then throughput and latency of
 * the heuristic prediction path against a bare Hono handler parsing the same JSON, measured in the same run,
 * alternating rounds so machine noise hits both. Prints JSON.
 *   BENCH_DURATION_S (default 10) per round, BENCH_ROUNDS (default 3), BENCH_CONNECTIONS (default 32).
 */
const durationS = Number(process.env.BENCH_DURATION_S ?? 10);
const rounds = Number(process.env.BENCH_ROUNDS ?? 3);
const connections = Number(process.env.BENCH_CONNECTIONS ?? 32);

interface Round {
  requests_per_s: number;
  p50_ms: number;
  p99_ms: number;
  non_2xx: number;
  errors: number;
}

async function load(port: number): Promise<Round> {
  let n = 0;
  const result = await autocannon({
    url: `http://127.0.0.1:${port}/v1/predictions`,
    connections,
    duration: durationS,
    requests: [
      {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        setupRequest: (req) => {
          n += 1;
          return {
            ...req,
            body: JSON.stringify(
              booking({ booking_id: `bench-${n}`, driver_active_bookings: n % 4, distance_km: n % 25 }),
            ),
          };
        },
      },
    ],
  });
  return {
    requests_per_s: result.requests.average,
    p50_ms: result.latency.p50,
    p99_ms: result.latency.p99,
    non_2xx: result.non2xx,
    errors: result.errors + result.timeouts,
  };
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? (s[mid] as number) : ((s[mid - 1] as number) + (s[mid] as number)) / 2;
};

function summary(rs: Round[]) {
  return {
    requests_per_s: Math.round(median(rs.map((r) => r.requests_per_s))),
    p50_ms: median(rs.map((r) => r.p50_ms)),
    p99_ms: median(rs.map((r) => r.p99_ms)),
    non_2xx: rs.reduce((s, r) => s + r.non_2xx, 0),
    errors: rs.reduce((s, r) => s + r.errors, 0),
    rounds: rs,
  };
}

/** Microseconds per row for calls of `batch` rows, median of 5 timed runs after a warm-up. */
async function inferenceMicrosPerRow(batch: number, calls: number) {
  const model = await loadOnnxModel('models', 'gbt-v1');
  const fixture = JSON.parse(readFileSync('models/gbt-v1.parity.json', 'utf8')) as { features: number[][] };
  const width = fixture.features[0]?.length ?? 0;
  const rows = new Float32Array(batch * width);
  for (let i = 0; i < batch; i++)
    rows.set(fixture.features[i % fixture.features.length] as number[], i * width);
  const runs: number[] = [];
  for (let run = 0; run < 6; run++) {
    const start = performance.now();
    for (let c = 0; c < calls; c++) await model.score(rows, batch);
    if (run > 0) runs.push(((performance.now() - start) * 1000) / (calls * batch));
  }
  return Math.round(median(runs) * 100) / 100;
}

const inference = {
  single_row_us: await inferenceMicrosPerRow(1, 2000),
  batch_1000_us_per_row: await inferenceMicrosPerRow(1000, 20),
};

const flagsFile = join(tempDir('delay-bench-'), 'flags.json');
writeFlags(flagsFile, flagsDocument({ mlWeight: 0 }));
// The prediction log writes to a fresh database on the machine's Postgres (production's engine) when it
// answers, else to PGlite (the embedded default).
const postgresDb = (await postgresAvailable()) ? await freshPostgres() : undefined;
const service = await startService({
  FLAGS_FILE: flagsFile,
  LOG_LEVEL: 'warn',
  ...(postgresDb ? { DATABASE_URL: postgresDb.url } : {}),
});
await waitForReady(service);
const barePort = await freePort();
const bare = spawn(process.execPath, ['--import', 'tsx', 'bench/bare-server.ts', String(barePort)], {
  stdio: 'inherit',
});
await waitForPort(barePort);

const serviceRounds: Round[] = [];
const bareRounds: Round[] = [];
try {
  await load(service.port);
  await load(barePort); // warm-up of both, discarded
  for (let i = 0; i < rounds; i++) {
    bareRounds.push(await load(barePort));
    serviceRounds.push(await load(service.port));
  }
} finally {
  bare.kill('SIGTERM');
  await service.stop('SIGTERM');
  await postgresDb?.close();
}

const serviceSummary = summary(serviceRounds);
const bareSummary = summary(bareRounds);
console.log(
  JSON.stringify(
    {
      node: process.version,
      connections,
      duration_s_per_round: durationS,
      rounds,
      onnx_inference: inference,
      prediction_log_database: postgresDb ? 'postgres' : 'pglite',
      service_heuristic: serviceSummary,
      bare_hono: bareSummary,
      throughput_ratio:
        Math.round((serviceSummary.requests_per_s / bareSummary.requests_per_s) * 1000) / 1000,
    },
    null,
    2,
  ),
);

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
