import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { createRolloutService } from '../rollout/rollout-service.js';
import { freshPglite } from '../test-support/databases.js';
import { flagsDocument, silentLogger, tempDir, testApp, testMetrics } from '../test-support/harness.js';
import { startKubernetesApiStandIn } from '../test-support/kubernetes-api-stand-in.js';
import { parseFlagConfig } from './flag-config.js';
import { FlagStoreError, kubernetesFlagStore } from './kubernetes-flag-store.js';

const open: { close(): Promise<void> }[] = [];
afterEach(async () => {
  for (const x of open.splice(0).reverse()) await x.close();
});

const TOKEN = 'k8s-webhook-token-0123456789';
type StandIn = Awaited<ReturnType<typeof startKubernetesApiStandIn>>;

/**
 * The rollout service on a FeatureFlag served by the stand-in API server, audited in PGlite (`audited: false`:
 * not audited, where no change can be made).
 */
async function onKubernetes(
  mlWeight = 50,
  { timeoutMs, audited = true }: { timeoutMs?: number; audited?: boolean } = {},
) {
  const api = await startKubernetesApiStandIn({
    namespace: 'delay-prediction',
    name: 'delay-prediction',
    flags: flagsDocument({ mlWeight }).flags,
  });
  open.push(api);
  const tokenFile = join(tempDir(), 'token');
  writeFileSync(tokenFile, 'service-account-token');
  const store = kubernetesFlagStore({
    namespace: 'delay-prediction',
    name: 'delay-prediction',
    apiUrl: api.url,
    tokenFile,
    caFile: join(tempDir(), 'no-ca.crt'),
    logger: silentLogger,
    ...(timeoutMs ? { timeoutMs } : {}),
  });
  const db = audited ? await freshPglite() : undefined;
  if (db) open.push(db);
  const m = testMetrics();
  const rollout = createRolloutService({
    store,
    metrics: m.metrics,
    logger: silentLogger,
    ...(db ? { db: db.db } : {}),
  });
  const mlShare = () => parseFlagConfig(JSON.stringify({ flags: api.flags() })).mlPercentage;
  return { api, store, rollout, mlShare, metricValue: m.value };
}

const rollback = { actor: 'alertmanager', action: 'rollback' as const, alertName: 'DelayMlErrorRatioHigh' };

/** A rollback alert posted to the webhook of an app on `rollout`. */
async function postRollback(rollout: Awaited<ReturnType<typeof onKubernetes>>['rollout']) {
  const t = await testApp({ deps: { rollback: { token: TOKEN, rollout } } });
  open.push(t);
  return t.app.request('/v1/webhooks/alertmanager', {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${TOKEN}` },
    body: JSON.stringify({
      status: 'firing',
      alerts: [{ status: 'firing', labels: { alertname: 'DelayMlErrorRatioHigh', rollback: 'true' } }],
    }),
  });
}

describe('the rollout on a FeatureFlag through the Kubernetes API (stand-in API server)', () => {
  it('rolls back with GET and a PATCH carrying the resourceVersion read, with the pod token, audited', async () => {
    const k = await onKubernetes(50);
    const change = await k.rollout.setPercentage(0, rollback);
    expect(change).toMatchObject({
      changed: true,
      previous: { mlPercentage: 50 },
      next: { mlPercentage: 0 },
    });
    expect(k.mlShare()).toBe(0);
    expect(k.api.requests.map((r) => r.method)).toEqual(['GET', 'PATCH']);
    expect(new Set(k.api.requests.map((r) => r.authorization))).toEqual(
      new Set(['Bearer service-account-token']),
    );
    expect((await k.rollout.history(1))[0]).toMatchObject({
      action: 'rollback',
      previousWeight: 50,
      newWeight: 0,
    });
    // Again: already at 0%, nothing written.
    expect((await k.rollout.setPercentage(0, rollback)).changed).toBe(false);
    expect(k.api.requests.filter((r) => r.method === 'PATCH')).toHaveLength(1);
    // Variants removed by a change are removed from the resource (a merge patch sets them to null).
    await k.rollout.setModel('gbt-v3', { actor: 'cli', action: 'set-model' });
    expect(
      Object.keys((k.api.flags() as { 'delay-model': { variants: object } })['delay-model'].variants),
    ).toEqual(['heuristic', 'gbt-v3']);
  });

  it('makes the change again on what a concurrent writer left when the API answers 409', async () => {
    const k = await onKubernetes(50);
    k.api.concurrentWrites(2);
    const change = await k.rollout.setPercentage(0, rollback);
    expect(change.changed).toBe(true);
    expect(k.mlShare()).toBe(0);
    expect(k.api.requests.map((r) => r.method)).toEqual(['GET', 'PATCH', 'GET', 'PATCH', 'GET', 'PATCH']);
  });

  it('says which permission is missing when RBAC forbids the patch, changes nothing, and the webhook answers 503', async () => {
    const k = await onKubernetes(50);
    k.api.forbid('patch');
    await expect(k.rollout.setPercentage(0, rollback)).rejects.toThrow(FlagStoreError);
    await expect(k.rollout.setPercentage(0, rollback)).rejects.toThrow(
      /forbidden to patch featureflags\/delay-prediction in namespace delay-prediction \(the service account's RBAC\): .*cannot patch resource "featureflags"/,
    );
    expect(k.mlShare()).toBe(50);
    expect(await k.rollout.history()).toEqual([]);

    const res = await postRollback(k.rollout);
    expect(res.status).toBe(503);
    const problem = await res.json();
    expect(problem).toMatchObject({ type: '/problems/rollback-not-written', title: 'Rollback not written' });
    expect(problem.detail).toMatch(/forbidden to patch .*ML still serves/);
    expect(await k.metricValue('delay.webhook.alerts', { outcome: 'failed' })).toBe(1);
  });

  it.each([
    [
      'gone (nothing listens on its port)',
      (api: StandIn) => api.close(),
      /cannot reach the Kubernetes API at .*ECONNREFUSED/,
    ],
    ['failing (HTTP 503)', (api: StandIn) => api.failNext(503), /cannot read featureflags.*HTTP 503/],
    [
      'hanging',
      (api: StandIn) => api.stall(),
      /cannot reach the Kubernetes API at .*no answer within 300 ms/,
    ],
  ])(
    'answers 503 rollback-not-written, counted as failed, when the API server is %s',
    async (_name, breakApi, reason) => {
      const k = await onKubernetes(50, { timeoutMs: 300, audited: false });
      await breakApi(k.api);
      await expect(k.rollout.setPercentage(0, rollback)).rejects.toThrow(FlagStoreError);
      const res = await postRollback(k.rollout);
      expect(res.status).toBe(503);
      const problem = await res.json();
      expect(problem).toMatchObject({
        type: '/problems/rollback-not-written',
        title: 'Rollback not written',
      });
      expect(problem.detail).toMatch(reason);
      expect(problem.detail).toMatch(/ML still serves/);
      expect(await k.metricValue('delay.webhook.alerts', { outcome: 'failed' })).toBe(1);
      expect(k.mlShare()).toBe(50);
    },
  );

  it('refuses an invalid FeatureFlag, and an invalid change, before writing anything', async () => {
    const k = await onKubernetes(50);
    const broken = flagsDocument({ mlWeight: 50 }).flags as Record<string, Record<string, unknown>>;
    broken['delay-model'] = { ...broken['delay-model'], defaultVariant: 'missing' };
    k.api.setFlags(broken as never);
    await expect(k.rollout.setPercentage(0, rollback)).rejects.toThrow(/rejected by flagd's schema/);
    expect(k.api.requests.filter((r) => r.method === 'PATCH')).toHaveLength(0);
    await expect(k.rollout.setPercentage(101, { actor: 'cli', action: 'enable' })).rejects.toThrow(
      /between 0 and 100/,
    );
  });
});
