import type { ChildProcess } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { parse, stringify } from 'yaml';
import { parseFlagConfig } from '../service/flags/flag-config.js';
import { booking, flagsDocument, tempDir, writeFlags } from '../service/test-support/harness.js';
import {
  monitoringBinaries,
  promQuery,
  startAlertmanager,
  startPrometheus,
} from '../service/test-support/monitoring.js';
import { type ServiceProcess, startService, waitForReady } from '../service/test-support/process.js';

/*
 * The proof of automatic rollback: the service, a real Prometheus and a real Alertmanager (Debian binaries)
 * with the repository's rules and routes. Test overrides only shorten intervals: 1 s scrape and evaluation,
 * `for:` 2 s, Alertmanager group_wait 1 s; and point the webhook at this service and its token.
 */
const binaries = monitoringBinaries('prometheus', 'prometheus-alertmanager');

const TOKEN = 'e2e-rollback-token-0123456789';
const children: ChildProcess[] = [];
const services: ServiceProcess[] = [];
afterEach(async () => {
  for (const child of children.splice(0)) child.kill('SIGTERM');
  await Promise.all(services.splice(0).map((s) => s.stop('SIGTERM')));
});

async function startStack() {
  const dir = tempDir('delay-rollback-');
  const flagsFile = join(dir, 'flags.json');
  writeFlags(flagsFile, flagsDocument({ mlWeight: 50 }));
  const service = await startService({
    FLAGS_FILE: flagsFile,
    ALERTMANAGER_WEBHOOK_TOKEN: TOKEN,
    FLAGS_POLL_INTERVAL_MS: '200',
  });
  services.push(service);
  await waitForReady(service);

  const tokenFile = join(dir, 'webhook-token');
  writeFileSync(tokenFile, TOKEN);
  const alertmanager = await startAlertmanager({
    webhookUrl: `http://127.0.0.1:${service.port}/v1/webhooks/alertmanager`,
    tokenFile,
  });
  children.push(alertmanager.process);
  const alerts = parse(readFileSync('prometheus/rules/alerts.yml', 'utf8'));
  for (const group of alerts.groups) for (const rule of group.rules) rule.for = '2s';
  writeFileSync(join(dir, 'alerts.yml'), stringify(alerts));
  const prometheus = await startPrometheus({
    metricsPort: service.metricsPort,
    alertmanagerUrl: alertmanager.url,
    alertsFile: join(dir, 'alerts.yml'),
  });
  children.push(prometheus.process);

  const post = (path: string, body: unknown) =>
    fetch(`http://127.0.0.1:${service.port}${path}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(body),
    }).then((r) => r.json());
  let batch = 0;
  const predict = async (n: number) => {
    batch += 1;
    const ids = Array.from({ length: n }, (_, i) =>
      booking({ booking_id: `rb-${batch}-${i}`, distance_km: 3 + (i % 10) }),
    );
    return (await post('/v1/predictions/batch', { bookings: ids })).predictions as {
      booking_id: string;
      delay_minutes: number;
      source: string;
    }[];
  };
  /** Feedback for the ML-served bookings, `errorMinutes` away from what was predicted. */
  const feedbackOnMl = async (predictions: Awaited<ReturnType<typeof predict>>, errorMinutes: number) => {
    const ml = predictions.filter((p) => p.source === 'ml');
    await new Promise((r) => setTimeout(r, 400)); // let the prediction log write them
    await post('/v1/feedback/batch', {
      feedback: ml.map((p) => ({
        booking_id: p.booking_id,
        actual_delay_minutes: p.delay_minutes + errorMinutes,
      })),
    });
    return ml.length;
  };
  const mlShare = () => parseFlagConfig(readFileSync(flagsFile, 'utf8')).mlPercentage;
  const query = (expr: string) => promQuery(prometheus.url, expr);
  // Counters start at 0 in the service; Prometheus must have seen them at 0 before the first feedback.
  await waitFor(
    async () => (await query('delay_feedback_scored_total{arm="ml"}').catch(() => [])).length > 0,
    30_000,
  );
  return { flagsFile, predict, feedbackOnMl, mlShare, query };
}

const waitFor = async (check: () => Promise<boolean> | boolean, timeoutMs: number) => {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await check()) return true;
    await new Promise((r) => setTimeout(r, 250));
  }
  return false;
};

describe.skipIf(!binaries)('automatic rollback with real Prometheus and Alertmanager', () => {
  it('takes ML out of traffic when its MAE goes bad', async () => {
    const stack = await startStack();
    const predictions = [...(await stack.predict(200)), ...(await stack.predict(200))];
    const started = performance.now();
    const bad = await stack.feedbackOnMl(predictions, 9);
    expect(bad).toBeGreaterThanOrEqual(150);

    let allHeuristicAt = 0;
    const rolledBack = await waitFor(async () => {
      const probe = await stack.predict(20);
      if (probe.every((p) => p.source === 'heuristic') && stack.mlShare() === 0) {
        allHeuristicAt = performance.now();
        return true;
      }
      return false;
    }, 90_000);
    expect(rolledBack).toBe(true);
    const seconds = (allHeuristicAt - started) / 1000;
    console.log(
      `rollback: ${seconds.toFixed(1)} s from the first bad feedback to the first all-heuristic predictions`,
    );
    expect(stack.mlShare()).toBe(0);
  }, 150_000);

  it('leaves the rollout alone on healthy feedback', async () => {
    const stack = await startStack();
    const predictions = [...(await stack.predict(200)), ...(await stack.predict(200))];
    await stack.feedbackOnMl(predictions, 0.5);
    // The MAE rule has evaluated (so the alert had its chance) and stays low.
    expect(
      await waitFor(
        async () =>
          (await stack.query('arm_model_version:delay_feedback_mae_minutes:30m{arm="ml"}')).length > 0,
        30_000,
      ),
    ).toBe(true);
    await new Promise((r) => setTimeout(r, 10_000));
    expect(stack.mlShare()).toBe(50);
  }, 90_000);

  it('leaves the rollout alone on too few feedbacks, however bad', async () => {
    const stack = await startStack();
    const predictions = await stack.predict(40);
    const bad = await stack.feedbackOnMl(predictions, 20);
    expect(bad).toBeLessThan(50);

    expect(
      await waitFor(
        async () =>
          (await stack.query('arm_model_version:delay_feedback_mae_minutes:30m{arm="ml"} > 5')).length > 0,
        30_000,
      ),
    ).toBe(true);
    await new Promise((r) => setTimeout(r, 10_000));
    expect(stack.mlShare()).toBe(50);
  }, 90_000);
});
