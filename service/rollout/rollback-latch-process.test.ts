import { execFile } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { eq } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { flagChanges } from '../../db/schema.js';
import { parseFlagConfig } from '../flags/flag-config.js';
import { freshPostgres, postgresAvailable } from '../test-support/databases.js';
import { startFlagdStandIn } from '../test-support/flagd-stand-in.js';
import { booking, eventually, flagsDocument, tempDir, writeFlags } from '../test-support/harness.js';
import { startKubernetesApiStandIn } from '../test-support/kubernetes-api-stand-in.js';
import {
  alertmanagerPayload,
  postTo,
  type ServiceProcess,
  scrapeMetrics,
  startService,
  waitForReady,
} from '../test-support/process.js';

/*
 * A rollback holds until a person lifts it, on real service processes and a real Postgres: two replicas on one
 * flag file (the git pull case), and one pod-like replica on a FeatureFlag behind the Kubernetes API stand-in
 * (the kubectl apply case). The OpenFeature Operator's sync from the FeatureFlag to the pod's flagd sidecar is
 * stood in by a loop copying the resource's flags into the file a flagd stand-in serves.
 */
const ready = await postgresAvailable();
const TOKEN = 'latch-webhook-token-0123456789';
const LATCH_POLL_MS = '500';

const cleanups: (() => Promise<unknown> | unknown)[] = [];
afterAll(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

const post = (service: ServiceProcess, path: string, body: unknown) => postTo(service, path, body, TOKEN);
const flagStatus = async (service: ServiceProcess) =>
  (await fetch(`http://127.0.0.1:${service.port}/v1/flags/status`)).json();
const rollbackAlert = alertmanagerPayload([
  {
    labels: { alertname: 'DelayMlErrorRatioHigh', rollback: 'true', signal: 'errors' },
    annotations: { summary: 'ML falls back on 30% of its bookings' },
    fingerprint: 'latch-process',
  },
]);
let batch = 0;
/** 200 bookings answered by `service`: how many ML served, and how many the latch held on the heuristic. */
async function predict(service: ServiceProcess) {
  batch += 1;
  const bookings = Array.from({ length: 200 }, (_, i) => booking({ booking_id: `latch-${batch}-${i}` }));
  const res = await post(service, '/v1/predictions/batch', { bookings });
  const answered = (await res.json()).predictions as { source: string; fallback_reason: string | null }[];
  return {
    ml: answered.filter((p) => p.source === 'ml').length,
    latched: answered.filter((p) => p.fallback_reason === 'rollback_latch').length,
  };
}
/** Predictions once the provider routes on the flag asking for ML (it reloads after the status): ML or held back. */
const heldBack = (service: ServiceProcess) =>
  eventually(
    () => predict(service),
    (served) => served.ml > 0 || served.latched > 5,
  );
const metric = async (service: ServiceProcess, name: string, labels?: Record<string, string>) =>
  (await scrapeMetrics(service.metricsPort))(name, labels);
/** npm run rollout, as on-call runs it where the service runs (its environment). */
const rollout = async (env: Record<string, string>, ...args: string[]) =>
  promisify(execFile)(process.execPath, ['--import', 'tsx', 'service/cli/rollout-cli.ts', ...args], {
    encoding: 'utf8',
    env: { PATH: process.env.PATH ?? '', ...env },
  });

describe.skipIf(!ready)(
  'an automatic rollback holds until a person lifts it (real processes, real Postgres)',
  () => {
    let fileDb: Awaited<ReturnType<typeof freshPostgres>>;
    let podDb: Awaited<ReturnType<typeof freshPostgres>>;
    let flagsFile: string;
    let replicas: [ServiceProcess, ServiceProcess];
    let pod: ServiceProcess;
    let api: Awaited<ReturnType<typeof startKubernetesApiStandIn>>;
    let podEnv: Record<string, string>;

    beforeAll(async () => {
      [fileDb, podDb] = await Promise.all([freshPostgres(), freshPostgres()]);
      cleanups.push(
        () => fileDb.close(),
        () => podDb.close(),
      );
      const dir = tempDir('delay-latch-');
      flagsFile = join(dir, 'flags.json');
      writeFlags(flagsFile, flagsDocument({ mlWeight: 10 }));

      api = await startKubernetesApiStandIn({
        namespace: 'delay-prediction',
        name: 'delay-prediction',
        flags: flagsDocument({ mlWeight: 10 }).flags,
      });
      cleanups.push(() => api.close());
      const sidecarFile = join(dir, 'featureflag.json');
      const sync = () => {
        const text = JSON.stringify({ $schema: flagsDocument().$schema, flags: api.flags() }, null, 2);
        if (readFileSync(sidecarFile, 'utf8') !== text) writeFlags(sidecarFile, text);
      };
      writeFileSync(sidecarFile, '');
      sync();
      const syncing = setInterval(sync, 100);
      cleanups.push(() => clearInterval(syncing));
      const flagd = await startFlagdStandIn(sidecarFile);
      cleanups.push(() => flagd.close());
      const tokenFile = join(dir, 'token');
      writeFileSync(tokenFile, 'service-account-token');

      const common = { ALERTMANAGER_WEBHOOK_TOKEN: TOKEN, ROLLBACK_LATCH_POLL_INTERVAL_MS: LATCH_POLL_MS };
      const fileEnv = {
        ...common,
        DATABASE_URL: fileDb.url,
        FLAGS_FILE: flagsFile,
        FLAGS_POLL_INTERVAL_MS: '200',
      };
      podEnv = {
        ...common,
        DATABASE_URL: podDb.url,
        // Git's flag file, which the FeatureFlag is generated from: the CLI compares the two.
        FLAGS_FILE: join(dir, 'git-flags.json'),
        FLAGD_HOST: flagd.host,
        FLAGD_PORT: String(flagd.port),
        FLAGS_FEATUREFLAG: 'delay-prediction/delay-prediction',
        KUBERNETES_API_URL: api.url,
        KUBERNETES_TOKEN_FILE: tokenFile,
      };
      writeFlags(podEnv.FLAGS_FILE as string, flagsDocument({ mlWeight: 10 }));
      const started = await Promise.all([startService(fileEnv), startService(fileEnv), startService(podEnv)]);
      cleanups.push(() => Promise.all(started.map((s) => s.stop('SIGTERM'))));
      // Three processes compile and start at once: on a loaded 2-core machine that has taken over a minute.
      await Promise.all(started.map((s) => waitForReady(s, 150_000)));
      [replicas, pod] = [
        [started[0], started[1]] as [ServiceProcess, ServiceProcess],
        started[2] as ServiceProcess,
      ];
    }, 180_000);

    it('two replicas on one Postgres route nothing to ML after a git pull puts 10% back, audit it once, until rollout enable', async () => {
      const [a, b] = replicas;
      expect(await predict(a)).toMatchObject({ latched: 0 });
      const res = await post(a, '/v1/webhooks/alertmanager', rollbackAlert);
      expect((await res.json()).results[0].outcome).toBe('rolled_back');
      expect(parseFlagConfig(readFileSync(flagsFile, 'utf8')).mlPercentage).toBe(0);
      for (const r of replicas) {
        await eventually(
          () => flagStatus(r),
          (s) => s.ml_percentage === 0 && s.rollback_latch?.held === true,
        );
        expect(await metric(r, 'delay_rollout_latch_held')).toBe(1);
      }
      expect((await flagStatus(b)).rollback_latch).toMatchObject({
        scope: 'shared',
        alert: 'DelayMlErrorRatioHigh',
        actor: 'alertmanager',
        reason: 'errors signal: ML falls back on 30% of its bookings',
      });

      // git pull: Git's file asks for 10% again.
      writeFlags(flagsFile, flagsDocument({ mlWeight: 10 }));
      for (const r of replicas) {
        await eventually(
          () => flagStatus(r),
          (s) => s.ml_percentage === 10 && s.rollback_latch?.refused?.ml_percentage === 10,
        );
        const served = await heldBack(r);
        expect(served.ml).toBe(0);
        expect(served.latched).toBeGreaterThan(5);
      }
      const refused = await eventually(
        () => fileDb.db.select().from(flagChanges).where(eq(flagChanges.action, 'refused')),
        (rows) => rows.length > 0,
      );
      for (const r of replicas)
        await eventually(
          () => metric(r, 'delay_rollout_latch_refusals_total', { source: 'file' }),
          (n) => n === 1,
        );
      // Both replicas judged the change; one row says so.
      expect(
        await fileDb.db.select().from(flagChanges).where(eq(flagChanges.action, 'refused')),
      ).toHaveLength(1);
      expect(refused[0]).toMatchObject({
        actor: `flag file ${flagsFile}`,
        previousWeight: 0,
        newWeight: 10,
        alertName: 'DelayMlErrorRatioHigh',
      });

      const env = { DATABASE_URL: fileDb.url, FLAGS_FILE: flagsFile };
      const status = JSON.parse((await rollout(env, 'status', '--json')).stdout);
      expect(status).toMatchObject({
        ml_percentage: 10,
        rollback_latch: { held: true, alert: 'DelayMlErrorRatioHigh', ml_percentage_routed: 0 },
      });
      const enable = await rollout(env, 'enable', '--percentage', '10', '--reason', 'error ratio fixed');
      expect(enable.stdout).toMatch(/delay-model: unchanged, ML 10%/);
      expect(enable.stdout).toMatch(/rollback latch lifted \(held since .*, DelayMlErrorRatioHigh\)/);
      for (const r of replicas) {
        await eventually(
          () => flagStatus(r),
          (s) => s.rollback_latch?.held === false,
        );
        await eventually(
          () => predict(r),
          (served) => served.ml > 5,
        );
        expect(await metric(r, 'delay_rollout_latch_held')).toBe(0);
      }
    }, 60_000);

    it('a pod routes nothing to ML after kubectl apply re-applies the FeatureFlag at 10%, audits it, until rollout enable', async () => {
      const res = await post(pod, '/v1/webhooks/alertmanager', rollbackAlert);
      expect((await res.json()).results[0].outcome).toBe('rolled_back');
      expect(parseFlagConfig(JSON.stringify({ flags: api.flags() })).mlPercentage).toBe(0);
      await eventually(
        () => flagStatus(pod),
        (s) => s.ml_percentage === 0 && s.rollback_latch?.held === true,
      );

      // kubectl apply -k: the generated FeatureFlag says 10%.
      api.setFlags(flagsDocument({ mlWeight: 10 }).flags);
      await eventually(
        () => flagStatus(pod),
        (s) => s.ml_percentage === 10,
      );
      const served = await heldBack(pod);
      expect(served.ml).toBe(0);
      expect(served.latched).toBeGreaterThan(5);
      const refused = await eventually(
        () => podDb.db.select().from(flagChanges).where(eq(flagChanges.action, 'refused')),
        (rows) => rows.length > 0,
      );
      expect(refused).toHaveLength(1);
      expect(refused[0]).toMatchObject({
        actor: 'FeatureFlag delay-prediction/delay-prediction',
        newWeight: 10,
        alertName: 'DelayMlErrorRatioHigh',
      });
      expect(await metric(pod, 'delay_rollout_latch_refusals_total', { source: 'flagd' })).toBe(1);

      const enable = await rollout(podEnv, 'enable', '--percentage', '10');
      expect(enable.stdout).toMatch(/rollback latch lifted/);
      await eventually(
        () => flagStatus(pod),
        (s) => s.rollback_latch?.held === false,
      );
      await eventually(
        () => predict(pod),
        (served) => served.ml > 5,
      );
    }, 60_000);
  },
);
