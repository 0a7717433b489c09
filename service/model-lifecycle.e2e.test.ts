import { execFile } from 'node:child_process';
import { copyFileSync, existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { and, eq, inArray, isNotNull } from 'drizzle-orm';
import { afterAll, describe, expect, it } from 'vitest';
import { flagChanges, predictions } from '../db/schema.js';
import { generateBookings, type RawBooking } from '../models/generator.js';
import { freshPostgres, postgresAvailable } from './test-support/databases.js';
import { booking, eventually, flagsDocument, tempDir, writeFlags } from './test-support/harness.js';
import {
  alertmanagerPayload,
  postTo,
  type ServiceProcess,
  scrapeMetrics,
  startService,
  waitForReady,
} from './test-support/process.js';
import { onnxEditorAvailable } from './test-support/shifted-model.js';

/*
 * The plan's maintenance loop on real processes: two replicas on one Postgres, each with the image's models folder
 * (gbt-v2 alone) and SHADOW_MODEL_VERSION naming the next version before it exists. Traffic of a shifted season
 * with its feedback is stored; the retraining job's command trains a challenger from it and registers it; both
 * replicas score it in shadow with no file copied and no restart; a canary serves it; a rollback alert takes it
 * out; a flag file rewritten as a `git pull` would routes nothing to ML until a person lifts the latch.
 * Alerts from a real Prometheus and Alertmanager reach the same webhook in alertmanager/rollback.e2e.test.ts.
 */
const ready = (await postgresAvailable()) && onnxEditorAvailable();
const TOKEN = 'lifecycle-webhook-token-0123456789';
/** Rush hour 2 h later, trips 1.5 times longer: a season the shipped model never saw. */
const SEASON = { rushShiftHours: 2, tripFactor: 1.5 };
const cleanups: (() => Promise<unknown> | unknown)[] = [];
afterAll(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

interface Run {
  status: number | null;
  stdout: string;
  stderr: string;
}
/** A CLI of service/cli, as on-call or the CronJob runs it with the deployment's settings. */
const cli = (name: string, env: Record<string, string>, ...args: string[]) =>
  new Promise<Run>((resolve) => {
    execFile(
      process.execPath,
      ['--import', 'tsx', `service/cli/${name}-cli.ts`, ...args],
      { encoding: 'utf8', env: { PATH: process.env.PATH ?? '', ...env }, maxBuffer: 16 * 1024 * 1024 },
      (err, stdout, stderr) =>
        resolve({ status: err ? (typeof err.code === 'number' ? err.code : null) : 0, stdout, stderr }),
    );
  });
const post = (service: ServiceProcess, path: string, body: unknown) => postTo(service, path, body, TOKEN);
interface Answer {
  booking_id: string;
  source: string;
  variant: string;
  model_version: string | null;
  fallback_reason: string | null;
}
async function serve(service: ServiceProcess, rows: RawBooking[]) {
  const answered: Answer[] = [];
  for (let i = 0; i < rows.length; i += 500) {
    const res = await post(service, '/v1/predictions/batch', {
      bookings: rows.slice(i, i + 500).map((r) => r.booking),
    });
    expect(res.status).toBe(200);
    answered.push(...((await res.json()) as { predictions: Answer[] }).predictions);
  }
  return answered;
}
async function sendFeedback(service: ServiceProcess, rows: RawBooking[]) {
  for (let i = 0; i < rows.length; i += 500) {
    const res = await post(service, '/v1/feedback/batch', {
      feedback: rows
        .slice(i, i + 500)
        .map((r) => ({ booking_id: r.booking.booking_id, actual_delay_minutes: r.actual_delay_minutes })),
    });
    expect(res.status).toBe(200);
  }
}

describe.skipIf(!ready)(
  'a model from retraining to canary to rollback, on two replicas of one Postgres',
  () => {
    it('is trained from stored feedback, registered, scored in shadow, canaried, rolled back, and held back', async () => {
      const database = await freshPostgres();
      cleanups.push(() => database.close());
      const dir = tempDir('delay-lifecycle-');
      const flagsFile = join(dir, 'flags.json');
      writeFlags(flagsFile, flagsDocument({ mlWeight: 50 }));
      const imageModels = tempDir('delay-lifecycle-models-');
      for (const ext of ['onnx', 'json'])
        copyFileSync(`models/gbt-v2.${ext}`, join(imageModels, `gbt-v2.${ext}`));
      const env = { DATABASE_URL: database.url, FLAGS_FILE: flagsFile, MODELS_DIR: imageModels };
      const replicas = await Promise.all(
        [0, 1].map(() =>
          startService({
            ...env,
            FLAGS_POLL_INTERVAL_MS: '200',
            SHADOW_MODEL_VERSION: 'gbt-v3',
            ALERTMANAGER_WEBHOOK_TOKEN: TOKEN,
            FEEDBACK_TOKEN: TOKEN,
            PREDICTIONS_TOKEN: TOKEN,
          }),
        ),
      );
      cleanups.push(() => Promise.all(replicas.map((r) => r.stop('SIGTERM'))));
      await Promise.all(replicas.map((r) => waitForReady(r, 120_000)));
      const [first, second] = replicas as [ServiceProcess, ServiceProcess];

      // Before retraining, a canary of a version no replica can load is refused where on-call runs it.
      const early = await cli('rollout', env, 'canary', 'gbt-v3', '--percentage', '10');
      expect(early.status).not.toBe(0);
      expect(early.stderr).toMatch(/gbt-v3/);

      // The season, served and fed back.
      const season = generateBookings({ seed: 2030, count: 4000, season: SEASON });
      const halves = [season.slice(0, 2000), season.slice(2000)];
      await Promise.all([serve(first, halves[0] as RawBooking[]), serve(second, halves[1] as RawBooking[])]);
      await eventually(
        async () => (await database.db.select({ id: predictions.id }).from(predictions)).length,
        (n) => n === season.length,
        30_000,
      );
      await sendFeedback(first, season);

      // The retraining job's command: trains from the stored feedback, registers the challenger, serves nothing.
      const retrained = await cli('retrain', env, 'run', '--days', '1', '--register', '--estimators', '150');
      expect(retrained.status, retrained.stderr).toBe(0);
      console.log(`retraining: ${retrained.stdout.trim().split('\n').slice(0, 8).join('\n')}`);
      expect(retrained.stdout).toMatch(/gbt-v3/);
      expect(readdirSync(imageModels).sort()).toEqual(['gbt-v2.json', 'gbt-v2.onnx']);
      const listed = await cli('models', env, 'show', 'gbt-v3');
      expect(listed.status, listed.stderr).toBe(0);

      // Shadow: each replica loads it from the registry on its own (no file, no restart): a version that failed to
      // load is tried again when a booking asks for it, 30 s after its last try.
      let warmUp = 0;
      for (const replica of replicas) {
        await eventually(
          async () => {
            warmUp += 1;
            await post(replica, '/v1/predictions', booking({ booking_id: `warm-up-${warmUp}` }));
            return scrapeMetrics(replica.metricsPort);
          },
          (m) => m('delay_models_loaded', { model_version: 'gbt-v3' }) === 1,
          90_000,
        );
      }
      const shadowWeek = generateBookings({ seed: 2031, count: 1000, season: SEASON });
      const answered = await serve(first, shadowWeek.slice(0, 500));
      answered.push(...(await serve(second, shadowWeek.slice(500))));
      expect(answered.filter((p) => p.model_version === 'gbt-v3')).toEqual([]);
      const ids = shadowWeek.map((r) => r.booking.booking_id);
      await eventually(
        async () =>
          (
            await database.db
              .select({ id: predictions.id })
              .from(predictions)
              .where(
                and(
                  inArray(predictions.bookingId, ids),
                  eq(predictions.shadowModelVersion, 'gbt-v3'),
                  isNotNull(predictions.shadowModelDelay),
                ),
              )
          ).length,
        (n) => n === ids.length,
        30_000,
      );
      await sendFeedback(second, shadowWeek);
      const paired = await Promise.all(
        replicas.map(async (r) =>
          (await scrapeMetrics(r.metricsPort))('delay_shadow_pairs_total', { against: 'rules' }),
        ),
      );
      expect(paired.reduce((a, b) => a + b, 0)).toBe(shadowWeek.length);

      // Canary: on-call's command is accepted now, and both replicas serve the challenger.
      const canary = await cli('rollout', env, 'canary', 'gbt-v3', '--percentage', '10');
      expect(canary.status, canary.stderr).toBe(0);
      for (const replica of replicas) {
        const served = await eventually(
          () => serve(replica, generateBookings({ seed: replica.port, count: 400 })),
          (a) => a.some((p) => p.model_version === 'gbt-v3' && p.source === 'ml'),
          20_000,
        );
        expect(served.filter((p) => p.variant === 'gbt-v3' && p.source !== 'ml')).toEqual([]);
      }

      // The machines roll it back (the webhook Alertmanager calls), and a flag file put back by a deploy changes nothing.
      const alert = alertmanagerPayload([
        {
          labels: { alertname: 'DelayModelLosingToRulesFast', rollback: 'true', model_version: 'gbt-v3' },
          annotations: { summary: 'gbt-v3 loses to the rules' },
        },
      ]);
      expect((await post(first, '/v1/webhooks/alertmanager', alert)).status).toBe(200);
      writeFlags(flagsFile, flagsDocument({ mlWeight: 50 }));
      for (const replica of replicas) {
        const held = await eventually(
          () => serve(replica, generateBookings({ seed: replica.port + 1, count: 400 })),
          (a) =>
            a.every((p) => p.source === 'heuristic') && a.some((p) => p.fallback_reason === 'rollback_latch'),
          20_000,
        );
        expect(held.filter((p) => p.source === 'ml')).toEqual([]);
      }
      // The flag put back asks for ML while the latch holds: audited as refused once it has held a few seconds.
      await eventually(
        async () => (await database.db.select().from(flagChanges)).map((row) => row.action),
        (actions) => ['canary', 'rollback', 'refused'].every((a) => actions.includes(a)),
        20_000,
      );
      expect(existsSync(join(imageModels, 'gbt-v3.onnx'))).toBe(false);
    }, 600_000);
  },
);
