import type { ChildProcess } from 'node:child_process';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { flagChanges, predictions } from '../db/schema.js';
import { dashboards, interpolatePromQL, type Panel } from '../grafana/dashboard-queries.js';
import { promotionChecks } from './rollout/auto-promoter.js';
import { freshPostgres, postgresAvailable } from './test-support/databases.js';
import { startFakeOpenWeatherMap } from './test-support/fake-openweathermap.js';
import { startFlagdStandIn } from './test-support/flagd-stand-in.js';
import { booking, eventually, flagsDocument, tempDir, writeFlags } from './test-support/harness.js';
import {
  monitoringBinaries,
  promQuery,
  startAlertmanager,
  startPrometheus,
} from './test-support/monitoring.js';
import { redisServerAvailable, startPrivateRedis } from './test-support/private-redis.js';
import {
  alertmanagerPayload,
  postTo,
  type ServiceProcess,
  scrapeMetrics,
  startService,
  waitForReady,
} from './test-support/process.js';

/*
 * Several replicas behave as one service: three service processes on one Postgres, one Redis and one flag
 * file, scraped by a real Prometheus with the repository's rules (1 s scrape and evaluation), with a real
 * Alertmanager routing to the rollback webhook of one of them. Flags are polled at the shipped 1 s.
 */
const ready =
  monitoringBinaries('prometheus', 'prometheus-alertmanager') &&
  (await postgresAvailable()) &&
  redisServerAvailable();
const TOKEN = 'replicas-webhook-token-0123456789';
const POLL_MS = 1000;
const BUDGET = 30;

const cleanups: (() => Promise<unknown> | unknown)[] = [];
afterAll(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

const post = (service: ServiceProcess, path: string, body: unknown) => postTo(service, path, body, TOKEN);

async function startReplicas(count: number, env: Record<string, string>) {
  const replicas = await Promise.all(Array.from({ length: count }, () => startService(env)));
  cleanups.push(() => Promise.all(replicas.map((r) => r.stop('SIGTERM'))));
  // Several processes compile and start at once on 2 cores: the default wait (60 s), not half of it.
  await Promise.all(replicas.map((r) => waitForReady(r)));
  return replicas;
}

describe.skipIf(!ready)('three replicas on one Postgres, one Redis and one flag file', () => {
  let replicas: ServiceProcess[];
  let database: Awaited<ReturnType<typeof freshPostgres>>;
  let weather: Awaited<ReturnType<typeof startFakeOpenWeatherMap>>;
  let prometheus: string;
  let alertmanager: string;
  let flagsFile: string;

  beforeAll(async () => {
    database = await freshPostgres();
    cleanups.push(() => database.close());
    const redis = await startPrivateRedis();
    cleanups.push(() => redis.kill('SIGTERM'));
    weather = await startFakeOpenWeatherMap();
    cleanups.push(() => weather.close());
    const dir = tempDir('delay-replicas-');
    flagsFile = join(dir, 'flags.json');
    writeFlags(flagsFile, flagsDocument({ mlWeight: 50 }));
    replicas = await startReplicas(3, {
      DATABASE_URL: database.url,
      REDIS_URL: redis.url,
      OPENWEATHER_API_KEY: 'replicas-key',
      OPENWEATHER_BASE_URL: weather.url,
      WEATHER_DAILY_BUDGET: String(BUDGET),
      FLAGS_FILE: flagsFile,
      FLAGS_POLL_INTERVAL_MS: String(POLL_MS),
      ALERTMANAGER_WEBHOOK_TOKEN: TOKEN,
    });
    const tokenFile = join(dir, 'webhook-token');
    writeFlags(tokenFile, TOKEN);
    const am = await startAlertmanager({
      webhookUrl: `http://127.0.0.1:${(replicas[0] as ServiceProcess).port}/v1/webhooks/alertmanager`,
      tokenFile,
    });
    cleanups.push(() => (am.process as ChildProcess).kill('SIGTERM'));
    alertmanager = am.url;
    const prom = await startPrometheus({
      metricsPorts: replicas.map((r) => r.metricsPort),
      alertmanagerUrl: am.url,
    });
    cleanups.push(() => prom.process.kill('SIGTERM'));
    prometheus = prom.url;
    await eventually(
      async () => (await promQuery(prometheus, 'up{job="delay-prediction"} == 1').catch(() => [])).length,
      (n) => n === 3,
      30_000,
    );
  }, 120_000);

  it('scores once the feedback sent to one replica for a prediction another answered, and the rules sum the three', async () => {
    const [a, b, c] = replicas as [ServiceProcess, ServiceProcess, ServiceProcess];
    // One weather cell for all of them: this test does not spend the weather budget.
    const served: { booking_id: string; delay_minutes: number; source: string }[] = [];
    for (const [k, replica] of [a, b, c].entries()) {
      const bookings = Array.from({ length: 200 }, (_, i) => booking({ booking_id: `score-${k}-${i}` }));
      const res = await post(replica, '/v1/predictions/batch', { bookings });
      served.push(...((await res.json()).predictions as typeof served));
    }
    const ml = served.filter((p) => p.source === 'ml');
    expect(ml.length).toBeGreaterThan(200);
    await eventually(
      async () =>
        Number((await database.db.select({ n: sql<number>`count(*)::int` }).from(predictions))[0]?.n),
      (n) => n === served.length,
    );
    // Feedback for what replica k answered goes to replica k + 1: ML 0.5 min off, every time.
    const byReplica = [0, 1, 2].map((k) => ml.filter((p) => p.booking_id.startsWith(`score-${k}-`)));
    for (const [k, answered] of byReplica.entries()) {
      const target = replicas[(k + 1) % 3] as ServiceProcess;
      const feedback = answered.map((p) => ({
        booking_id: p.booking_id,
        actual_delay_minutes: Math.round((p.delay_minutes + 0.5) * 1000) / 1000,
      }));
      const res = await post(target, '/v1/feedback/batch', { feedback });
      const { results } = (await res.json()) as { results: { outcome: string }[] };
      expect(new Set(results.map((r) => r.outcome))).toEqual(new Set(['recorded']));
      // The same feedback again, to the replica that answered: a repeat, not a second score.
      const again = await post(replicas[k] as ServiceProcess, '/v1/feedback/batch', { feedback });
      expect(new Set(((await again.json()).results as { outcome: string }[]).map((r) => r.outcome))).toEqual(
        new Set(['unchanged']),
      );
    }
    const scoredOn = await Promise.all(
      replicas.map(async (r) =>
        (await scrapeMetrics(r.metricsPort))('delay_feedback_scored_total', { arm: 'ml' }),
      ),
    );
    expect(scoredOn.reduce((s, n) => s + n, 0)).toBe(ml.length);
    expect(scoredOn.every((n) => n > 0)).toBe(true);

    // Prometheus: the count over the three instances is every ML feedback, and the MAE is the 0.5 min of all.
    const total = await eventually(
      async () =>
        Number((await promQuery(prometheus, 'sum(delay_feedback_scored_total{arm="ml"})'))[0]?.value[1]),
      (n) => n === ml.length,
      30_000,
    );
    expect(total).toBe(ml.length);
    const mae = await eventually(
      async () =>
        Number(
          (
            await promQuery(
              prometheus,
              'arm_model_version:delay_feedback_mae_minutes:5m{arm="ml",model_version="gbt-v2"}',
            )
          )[0]?.value[1],
        ),
      (v) => Math.abs(v - 0.5) < 0.005,
      30_000,
    );
    expect(mae).toBeCloseTo(0.5, 2);
    // The recording rule every quality alert reads sums the instances: once it has evaluated over the last
    // scrapes, it holds (within increase()'s extrapolation) every ML feedback, more than any one instance has.
    const scoredRule = await eventually(
      async () =>
        Number(
          (
            await promQuery(
              prometheus,
              'arm_model_version:delay_feedback_scored:increase5m{arm="ml",model_version="gbt-v2"}',
            )
          )[0]?.value[1],
        ),
      (v) => v >= 0.9 * ml.length,
      30_000,
    );
    expect(scoredRule).toBeGreaterThan(Math.max(...scoredOn));
  }, 90_000);

  it('spends one weather budget across the three', async () => {
    const before = weather.calls.length;
    // 120 bookings in 120 cells of their own, 40 to each replica at once.
    const sends = replicas.map((replica, k) =>
      post(replica, '/v1/predictions/batch', {
        bookings: Array.from({ length: 40 }, (_, i) => {
          const lon = -170 + (k * 40 + i) * 0.5;
          return booking({
            booking_id: `weather-${k}-${i}`,
            scheduled_at: new Date().toISOString(),
            pickup: { lat: 10, lon },
            dropoff: { lat: 10.01, lon },
          });
        }),
      }),
    );
    for (const res of await Promise.all(sends)) expect(res.status).toBe(200);
    const calls = weather.calls.length - before;
    const refused = await Promise.all(
      replicas.map(async (r) =>
        (await scrapeMetrics(r.metricsPort))('delay_weather_calls_refused_total', { reason: 'budget' }),
      ),
    );
    console.log(`weather: ${calls} API calls for 120 new cells on three replicas, budget ${BUDGET}`);
    expect(calls).toBeLessThanOrEqual(BUDGET);
    expect(calls).toBeGreaterThan(0);
    expect(refused.reduce((s, n) => s + n, 0)).toBeGreaterThan(0);
  }, 60_000);

  it('makes one rollback of an alert sent to two replicas at once and through Alertmanager; all three serve the heuristic within the poll interval', async () => {
    const [a, b] = replicas as [ServiceProcess, ServiceProcess];
    const alert = {
      // As Prometheus sends it: the rules keep the job, and Alertmanager's rollback route matches it.
      labels: {
        alertname: 'DelayModelFarFromRules',
        severity: 'critical',
        rollback: 'true',
        signal: 'label_free',
        job: 'delay-prediction',
      },
      annotations: { summary: 'replicas test' },
      fingerprint: 'replicas',
    };
    const payload = alertmanagerPayload([alert]);
    const [onA, onB] = await Promise.all([
      post(a, '/v1/webhooks/alertmanager', payload),
      post(b, '/v1/webhooks/alertmanager', payload),
    ]);
    const rolledAt = performance.now();
    const outcomes = [await onA.json(), await onB.json()].map((r) => r.results[0].outcome).sort();
    expect(outcomes).toEqual(['already_rolled_back', 'rolled_back']);
    // Alertmanager delivers the same alert to replica A's webhook: a no-op.
    const am = await fetch(`${alertmanager}/api/v2/alerts`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify([{ labels: alert.labels, annotations: alert.annotations }]),
    });
    expect(am.status).toBe(200);

    const probes = Array.from({ length: 100 }, (_, i) => booking({ booking_id: `probe-${i}` }));
    // When each replica first answered a whole probe batch from the heuristic, counted from the moment that
    // probe was sent (its own duration is the probe's, not the rollout's).
    const seconds = await Promise.all(
      replicas.map(async (replica) => {
        for (;;) {
          const sentAt = performance.now();
          const res = await post(replica, '/v1/predictions/batch', { bookings: probes });
          const answered = (await res.json()).predictions as { source: string }[];
          if (answered.every((p) => p.source === 'heuristic')) return (sentAt - rolledAt) / 1000;
          if (sentAt - rolledAt > 10_000) throw new Error('ML still serving 10 s after the rollback');
          await new Promise((r) => setTimeout(r, 20));
        }
      }),
    );
    console.log(
      `all-heuristic ${seconds.map((s) => s.toFixed(2)).join(' / ')} s after the rollback (poll ${POLL_MS} ms)`,
    );
    expect(Math.max(...seconds)).toBeLessThanOrEqual(POLL_MS / 1000 + 0.25);

    await eventually(
      async () =>
        Number(
          (await scrapeMetrics(a.metricsPort))('delay_webhook_alerts_total', {
            outcome: 'already_rolled_back',
          }) +
            (await scrapeMetrics(b.metricsPort))('delay_webhook_alerts_total', {
              outcome: 'already_rolled_back',
            }),
        ),
      (n) => n >= 2,
      20_000,
    );
    const rollbacks = await database.db
      .select()
      .from(flagChanges)
      .where(sql`${flagChanges.action} = 'rollback'`);
    expect(rollbacks).toHaveLength(1);
  }, 60_000);
});

describe.skipIf(!ready)('three replicas with AUTO_PROMOTE=true', () => {
  it('promote from one replica only: the holder of the leader lock', async () => {
    const database = await freshPostgres();
    cleanups.push(() => database.close());
    // A stand-in for Prometheus' query API: every promotion query of this deployment answers a healthy value.
    const selector = 'job="delay-prediction"';
    const checks = promotionChecks(selector);
    const healthy: Record<string, string> = {
      [checks.pairedDifference]: '-0.3',
      [checks.samples]: '500',
      [checks.mae]: '1.7',
      [checks.fallbackRatio]: '0.01',
      [checks.latencyP95]: '0.004',
    };
    const server = createServer((req, res) => {
      const value = healthy[new URL(req.url ?? '/', 'http://x').searchParams.get('query') ?? ''];
      res.setHeader('content-type', 'application/json');
      res.end(
        JSON.stringify({
          status: 'success',
          // Per model version for the paired queries; the others read the first sample.
          data: {
            resultType: 'vector',
            result: value ? [{ metric: { model_version: 'gbt-v2' }, value: [0, value] }] : [],
          },
        }),
      );
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    cleanups.push(() => new Promise((r) => server.close(r)));
    const flagsFile = join(tempDir('delay-promoters-'), 'flags.json');
    writeFlags(flagsFile, flagsDocument({ mlWeight: 10 }));
    const promoters = await startReplicas(3, {
      DATABASE_URL: database.url,
      FLAGS_FILE: flagsFile,
      AUTO_PROMOTE: 'true',
      AUTO_PROMOTE_SELECTOR: selector,
      PROMETHEUS_URL: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
      AUTO_PROMOTE_SOAK_S: '1',
      AUTO_PROMOTE_INTERVAL_S: '1',
    });
    const promotions = () =>
      database.db
        .select()
        .from(flagChanges)
        .where(sql`${flagChanges.action} = 'promote'`)
        .orderBy(flagChanges.id);
    const steps = await eventually(promotions, (rows) => rows.length === 3, 30_000);
    expect(steps.map((r) => [r.previousWeight, r.newWeight])).toEqual([
      [10, 25],
      [25, 50],
      [50, 100],
    ]);
    const promotedBy = promoters.filter((p) => p.output().includes('rollout promoted'));
    expect(promotedBy).toHaveLength(1);
    const leaders = promoters.filter((p) => p.output().includes('leading the promotion'));
    expect(leaders).toEqual(promotedBy);
  }, 90_000);
});

describe.skipIf(!ready)('two replicas in flagd-server mode (FLAGD_HOST), as compose runs them', () => {
  it('report the rollout flagd serves, feed the Rollout dashboard, and follow a rollback written to the served file', async () => {
    const database = await freshPostgres();
    cleanups.push(() => database.close());
    const flagsFile = join(tempDir('delay-flagd-mode-'), 'flags.json');
    writeFlags(flagsFile, flagsDocument({ mlWeight: 50 }));
    // The stand-in for flagd serves the file the webhook writes, as flagd does in docker-compose.yml.
    const flagd = await startFlagdStandIn(flagsFile);
    cleanups.push(() => flagd.close());
    const replicas = await startReplicas(2, {
      DATABASE_URL: database.url,
      FLAGD_HOST: flagd.host,
      FLAGD_PORT: String(flagd.port),
      FLAGS_FILE: flagsFile,
      ALERTMANAGER_WEBHOOK_TOKEN: TOKEN,
    });
    const [a, b] = replicas as [ServiceProcess, ServiceProcess];
    for (const replica of replicas) {
      const status = await (await fetch(`http://127.0.0.1:${replica.port}/v1/flags/status`)).json();
      expect(status).toMatchObject({
        source: { kind: 'flagd' },
        ml_percentage: 50,
        model_variants: ['gbt-v2'],
        split: [
          { variant: 'gbt-v2', weight: 50 },
          { variant: 'heuristic', weight: 50 },
        ],
      });
      const metric = await scrapeMetrics(replica.metricsPort);
      expect(metric('delay_rollout_ml_percentage')).toBe(50);
      expect(metric('delay_prediction_fallbacks_total', { model_version: 'gbt-v2' })).toBe(0);
    }
    const bookings = Array.from({ length: 100 }, (_, i) => booking({ booking_id: `flagd-${i}` }));
    for (const replica of replicas)
      expect((await post(replica, '/v1/predictions/batch', { bookings })).status).toBe(200);

    // A real Prometheus scraping both answers every Prometheus panel of the Rollout dashboard.
    const prom = await startPrometheus({ metricsPorts: replicas.map((r) => r.metricsPort) });
    cleanups.push(() => prom.process.kill('SIGTERM'));
    const rollout = dashboards.find((d) => d.file === 'rollout.json');
    if (!rollout) throw new Error('grafana/dashboards/rollout.json is missing');
    const exprs = (rollout.json.panels as Panel[]).flatMap((p) =>
      p.targets.flatMap((t) => (t.expr ? [interpolatePromQL(t.expr, rollout.json)] : [])),
    );
    expect(exprs.length).toBeGreaterThan(5);
    for (const expr of exprs)
      await eventually(
        async () => (await promQuery(prom.url, expr).catch(() => [])).length,
        (n) => n > 0,
        30_000,
      );
    expect(Number((await promQuery(prom.url, 'max(delay_rollout_ml_percentage)'))[0]?.value[1])).toBe(50);

    // The webhook of one replica writes the file flagd serves; flagd pushes it to both.
    const res = await post(a, '/v1/webhooks/alertmanager', {
      status: 'firing',
      alerts: [
        {
          status: 'firing',
          labels: { alertname: 'DelayMlErrorRatioHigh', rollback: 'true', signal: 'errors' },
        },
      ],
    });
    expect((await res.json()).results[0].outcome).toBe('rolled_back');
    for (const replica of [a, b]) {
      await eventually(
        async () =>
          (await (await fetch(`http://127.0.0.1:${replica.port}/v1/flags/status`)).json()).ml_percentage,
        (p) => p === 0,
        10_000,
      );
      await eventually(
        async () =>
          (
            (await (await post(replica, '/v1/predictions/batch', { bookings })).json()).predictions as {
              source: string;
            }[]
          ).every((p) => p.source === 'heuristic'),
        Boolean,
        10_000,
      );
    }
  }, 120_000);
});
