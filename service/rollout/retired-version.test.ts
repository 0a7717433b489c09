import type { ChildProcess } from 'node:child_process';
import { copyFileSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { flagChanges } from '../../db/schema.js';
import { generateTraffic } from '../../models/traffic.js';
import type { Booking } from '../domain/booking.js';
import { NEUTRAL_WEATHER } from '../domain/weather.js';
import { bookingFeatures } from '../features/booking-features.js';
import { ACTUAL_DELAY_FLOOR } from '../feedback/feedback-service.js';
import { parseFlagConfig } from '../flags/flag-config.js';
import { heuristicEstimate } from '../predictors/heuristic.js';
import { freshPostgres, postgresAvailable } from '../test-support/databases.js';
import { eventually, flagsDocument, tempDir, writeFlags } from '../test-support/harness.js';
import {
  monitoringBinaries,
  postFeedbackUntilStored,
  promQuery,
  startRollbackLoop,
} from '../test-support/monitoring.js';
import { type ServiceProcess, scrapeMetrics, startService, waitForReady } from '../test-support/process.js';

/*
 * A rollback alert about a model version the flag no longer routes to (the late feedback of a replaced version)
 * must not roll back the version that replaced it. The service, a real Prometheus with the committed rules and a
 * real Alertmanager with the committed routes; test overrides only shorten intervals (1 s scrape and evaluation,
 * `for:` 2 s, group_wait 1 s), as in alertmanager/rollback.e2e.test.ts.
 */
const ready = monitoringBinaries('prometheus', 'prometheus-alertmanager') && (await postgresAvailable());

const TOKEN = 'retired-version-token-0123456789';
const children: ChildProcess[] = [];
const cleanups: (() => Promise<unknown>)[] = [];
afterAll(async () => {
  for (const child of children.splice(0)) child.kill('SIGTERM');
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

/** What the heuristic answers for a booking: the service runs without a weather key (neutral weather). */
const shadowOf = (b: Booking) => heuristicEstimate(bookingFeatures(b, NEUTRAL_WEATHER)).delay_minutes;

/** gbt-v2 and, under the name gbt-v0, the same graph: the version served before it. */
function modelsWithPredecessor() {
  const dir = tempDir('delay-retired-models-');
  for (const ext of ['onnx', 'json']) copyFileSync(`models/gbt-v2.${ext}`, join(dir, `gbt-v2.${ext}`));
  copyFileSync('models/gbt-v2.onnx', join(dir, 'gbt-v0.onnx'));
  const card = JSON.parse(readFileSync('models/gbt-v2.json', 'utf8'));
  writeFileSync(
    join(dir, 'gbt-v0.json'),
    JSON.stringify({ ...card, version: 'gbt-v0', onnx: { ...card.onnx, file: 'gbt-v0.onnx' } }, null, 2),
  );
  return dir;
}

describe.skipIf(!ready)(
  'a rollback alert for a version the flag no longer serves (real Prometheus and Alertmanager)',
  () => {
    it('leaves the serving version alone on the alert about its predecessor, and rolls it back on its own', async () => {
      const database = await freshPostgres();
      cleanups.push(() => database.close());
      const dir = tempDir('delay-retired-');
      const flagsFile = join(dir, 'flags.json');
      writeFlags(flagsFile, flagsDocument({ mlWeight: 50, modelVersion: 'gbt-v0' }));
      const service: ServiceProcess = await startService({
        FLAGS_FILE: flagsFile,
        MODELS_DIR: modelsWithPredecessor(),
        DATABASE_URL: database.url,
        ALERTMANAGER_WEBHOOK_TOKEN: TOKEN,
        FLAGS_POLL_INTERVAL_MS: '200',
      });
      cleanups.push(() => service.stop('SIGTERM'));
      await waitForReady(service);

      const { prometheus, alertmanager } = await startRollbackLoop({ service, token: TOKEN });
      children.push(alertmanager.process, prometheus.process);
      const query = (expr: string) => promQuery(prometheus.url, expr).catch(() => []);

      const post = (path: string, body: unknown) =>
        fetch(`http://127.0.0.1:${service.port}${path}`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify(body),
        }).then((r) => r.json());
      type Served = { booking_id: string; delay_minutes: number; source: string; model_version: string };
      const traffic = generateTraffic({
        seed: 3,
        startDay: '2025-01-23',
        startHour: 7,
        hours: 3,
        perSecond: 4,
      });
      let batch = 0;
      /** 300 bookings in batches of 100, each answer with the heuristic's shadow answer for the same booking. */
      const predict = async () => {
        const served: (Served & { shadow: number })[] = [];
        for (let i = 0; i < 3; i++) {
          batch += 1;
          const sent = traffic
            .splice(0, 100)
            .map((r, j) => ({ ...r.booking, booking_id: `rv-${batch}-${j}` }));
          const answered = (await post('/v1/predictions/batch', { bookings: sent })).predictions as Served[];
          served.push(...answered.map((p, j) => ({ ...p, shadow: shadowOf(sent[j] as Booking) })));
        }
        return served;
      };
      /** Feedback 6 min from the rules' answer, on the side away from ML: ML loses to the rules on every booking. */
      const badFeedbackOn = async (version: string, served: Awaited<ReturnType<typeof predict>>) => {
        const waiting = served
          .filter((p) => p.source === 'ml' && p.model_version === version)
          .map((p) => ({
            booking_id: p.booking_id,
            actual_delay_minutes:
              Math.round(
                Math.max(ACTUAL_DELAY_FLOOR, p.delay_minutes > p.shadow ? p.shadow - 6 : p.shadow + 6) * 100,
              ) / 100,
          }));
        const count = waiting.length;
        await postFeedbackUntilStored(post, waiting);
        return count;
      };
      const webhookOutcome = async (outcome: string) =>
        (await scrapeMetrics(service.metricsPort))('delay_webhook_alerts_total', { outcome });
      const firing = async (version: string) =>
        (
          await query(
            `ALERTS{alertname="DelayModelLosingToRulesFast",alertstate="firing",model_version="${version}"}`,
          )
        ).length > 0;
      const rollout = () => parseFlagConfig(readFileSync(flagsFile, 'utf8'));

      // Prometheus has seen the counters at 0 before the first feedback, as increase() needs.
      await eventually(
        async () => (await query('delay_feedback_scored_total{arm="ml",model_version="gbt-v0"}')).length,
        (n) => n > 0,
        30_000,
      );
      const byPredecessor = await predict();
      // gbt-v2 replaces gbt-v0 at the same share; gbt-v0's trips end afterwards, and end badly.
      writeFlags(flagsFile, flagsDocument({ mlWeight: 50, modelVersion: 'gbt-v2' }));
      await eventually(
        async () =>
          (await (await fetch(`http://127.0.0.1:${service.port}/v1/flags/status`)).json()).model_versions,
        (versions) => JSON.stringify(versions) === '["gbt-v2"]',
      );
      await eventually(
        async () => (await query('delay_feedback_scored_total{arm="ml",model_version="gbt-v2"}')).length,
        (n) => n > 0,
        30_000,
      );
      expect(await badFeedbackOn('gbt-v0', byPredecessor)).toBeGreaterThanOrEqual(100);

      await eventually(firing.bind(null, 'gbt-v0'), Boolean, 60_000);
      await eventually(
        () => webhookOutcome('not_served'),
        (n) => n >= 1,
        30_000,
      );
      expect(rollout()).toMatchObject({ mlPercentage: 50, activeModelVersions: ['gbt-v2'] });
      expect(await webhookOutcome('rolled_back')).toBe(0);
      expect(await database.db.select().from(flagChanges)).toEqual([]);
      expect(service.output()).toMatch(/rollback alert for a model version the flag does not route to/);

      // The serving version losing to the rules is rolled back, by the same rule and route.
      const byServing = await predict();
      expect(await badFeedbackOn('gbt-v2', byServing)).toBeGreaterThanOrEqual(100);
      await eventually(rollout, (r) => r.mlPercentage === 0, 60_000);
      expect(await firing('gbt-v2')).toBe(true);
      expect(await webhookOutcome('rolled_back')).toBe(1);
      const rows = await database.db.select().from(flagChanges);
      expect(rows).toHaveLength(1);
      expect(rows[0]).toMatchObject({
        actor: 'alertmanager',
        action: 'rollback',
        previousWeight: 50,
        newWeight: 0,
        modelVersion: 'gbt-v2',
        alertName: 'DelayModelLosingToRulesFast',
        labels: expect.objectContaining({ model_version: 'gbt-v2', signal: 'feedback' }),
      });
    }, 180_000);
  },
);
