import type { ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { prometheusQueries } from '../grafana/dashboard-queries.js';
import { sloBudgetLeft } from '../service/reports/slo-budget.js';
import { startFakeOpenWeatherMap } from '../service/test-support/fake-openweathermap.js';
import { booking, flagsDocument, tempDir, writeFlags } from '../service/test-support/harness.js';
import { monitoringBinaries, promQuery, startPrometheus } from '../service/test-support/monitoring.js';
import {
  freePort,
  type ServiceProcess,
  startService,
  waitForReady,
} from '../service/test-support/process.js';
import { redisAvailable } from '../service/test-support/redis.js';

/*
 * The service scraped by a real Prometheus (Debian's binary) running the repository's rule files, with only the
 * scrape and evaluation intervals shortened. Every dashboard query and every recording rule must return data,
 * and every metric they name must be in the scrape and in docs/metrics.md.
 */
const hasPrometheus = monitoringBinaries('prometheus');
const hasRedis = hasPrometheus && (await redisAvailable());

const E2E_REDIS_URL = 'redis://127.0.0.1:6379/14';
let service: ServiceProcess;
let prometheus: ChildProcess;
let promUrl = '';
let fake: Awaited<ReturnType<typeof startFakeOpenWeatherMap>>;

const query = (expr: string) => promQuery(promUrl, expr);

const post = (path: string, body: unknown) =>
  fetch(`http://127.0.0.1:${service.port}${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });

describe.skipIf(!hasPrometheus || !hasRedis)('the service under a real Prometheus', () => {
  beforeAll(async () => {
    fake = await startFakeOpenWeatherMap();
    // A Redis database of its own, emptied: weather cached by earlier runs would spare the API its calls.
    const redis = new Redis(E2E_REDIS_URL);
    await redis.flushdb();
    await redis.quit();
    const flagsFile = join(tempDir('delay-e2e-'), 'flags.json');
    writeFlags(flagsFile, flagsDocument({ mlWeight: 50 }));
    service = await startService({
      FLAGS_FILE: flagsFile,
      OPENWEATHER_API_KEY: 'e2e-key',
      OPENWEATHER_BASE_URL: fake.url,
      REDIS_URL: E2E_REDIS_URL,
      WEATHER_GRID_DEG: '0.01',
      // The shipped model in shadow beside itself: the shadow series exist, paired with the rules.
      SHADOW_MODEL_VERSION: 'gbt-v2',
      // A cost per minute: the cost figure and its gauge exist.
      COST_PER_DELAY_MINUTE: '0.5',
      // Lateness from 3 min: this short, fair-weather traffic flags and misses some bookings, so every share exists.
      LATE_THRESHOLD_MINUTES: '3',
    });
    await waitForReady(service);

    const started = await startPrometheus({ metricsPorts: [service.metricsPort] });
    prometheus = started.process;
    promUrl = started.url;

    // Traffic for a few scrapes: predictions (half on ML), feedback for each, one bad request.
    const latitude = 48;
    for (let round = 0; round < 8; round++) {
      const ids = Array.from({ length: 60 }, (_, i) => `e2e-${round}-${i}`);
      const res = await post('/v1/predictions/batch', {
        bookings: ids.map((id, i) =>
          booking({
            booking_id: id,
            scheduled_at: new Date().toISOString(),
            pickup: { lat: latitude + (i % 10) * 0.01, lon: 2.35 },
            distance_km: 2 + (i % 15),
          }),
        ),
      });
      const { predictions } = (await res.json()) as {
        predictions: { booking_id: string; delay_minutes: number }[];
      };
      await new Promise((r) => setTimeout(r, 400)); // the prediction log writes every 200 ms
      await post('/v1/feedback/batch', {
        feedback: predictions.map((p, i) => ({
          booking_id: p.booking_id,
          actual_delay_minutes: p.delay_minutes + (i % 5) - 2,
        })),
      });
      // Single predictions too: the latency SLO counts the single endpoint.
      await post(
        '/v1/predictions',
        booking({ booking_id: `e2e-single-${round}`, scheduled_at: new Date().toISOString() }),
      );
      await post('/v1/predictions', { booking_id: '' });
      await new Promise((r) => setTimeout(r, 600));
    }
    // Rules evaluate every second; give them a few rounds over the data.
    await new Promise((r) => setTimeout(r, 4000));
  }, 120_000);

  afterAll(async () => {
    prometheus?.kill('SIGTERM');
    await service?.stop('SIGTERM');
    await fake?.close();
  });

  it('scrapes the service', async () => {
    const up = (await query('up{job="delay-prediction"}')) as { value: [number, string] }[];
    expect(up[0]?.value[1]).toBe('1');
  });

  it('answers every recording rule', async () => {
    const recording = parse(readFileSync('prometheus/rules/recording.yml', 'utf8')) as {
      groups: { rules: { record: string }[] }[];
    };
    const empty: string[] = [];
    for (const rule of recording.groups.flatMap((g) => g.rules)) {
      if ((await query(rule.record)).length === 0) empty.push(rule.record);
    }
    expect(empty).toEqual([]);
  });

  it("gives the daily report each SLO's budget left, and the reason when Prometheus does not answer", async () => {
    const budgets = await sloBudgetLeft(promUrl);
    expect(budgets.map((b) => b.slo).sort()).toEqual(['prediction-availability', 'prediction-latency']);
    for (const b of budgets) {
      expect(b.error, b.slo).toBeUndefined();
      expect(b.deployment).toBe('delay-prediction');
      expect(b.budget_left).toBeLessThanOrEqual(1);
    }
    // No 5xx in this traffic: the availability budget is untouched.
    expect(budgets.find((b) => b.slo === 'prediction-availability')?.budget_left).toBe(1);
    const closed = await freePort();
    const unanswered = await sloBudgetLeft(`http://127.0.0.1:${closed}`);
    expect(unanswered.every((b) => b.budget_left === null && typeof b.error === 'string')).toBe(true);
  });

  it('answers every dashboard panel query', async () => {
    const empty: string[] = [];
    for (const { panel, expr } of prometheusQueries()) {
      if ((await query(expr)).length === 0) empty.push(`${panel}: ${expr}`);
    }
    expect(empty).toEqual([]);
  });

  it('finds every metric the rules and dashboards name in the scrape and in the catalogue', async () => {
    const scrape = await (await fetch(`http://127.0.0.1:${service.metricsPort}/metrics`)).text();
    const catalogue = readFileSync('docs/metrics.md', 'utf8');
    const texts = [
      readFileSync('prometheus/rules/recording.yml', 'utf8'),
      readFileSync('prometheus/rules/alerts.yml', 'utf8'),
      ...prometheusQueries().map((q) => q.expr),
    ]
      .join('\n')
      // Recording rule names (level:metric:operation) are not scraped metrics.
      .replace(/[a-z_]*:[a-z0-9_]+:[a-z0-9_]+/g, '');
    const names = new Set(texts.match(/\b(delay_[a-z0-9_]+|http_server_[a-z_]+)\b/g));
    const missing = [...names].filter((name) => {
      const inScrape = new RegExp(`^${name}[{ ]`, 'm').test(scrape);
      const base = name.replace(/_(bucket|count|sum|total)$/, '');
      return !inScrape || !(catalogue.includes(name) || catalogue.includes(base));
    });
    expect(missing).toEqual([]);
  });
});
