import { spawn } from 'node:child_process';
import {
  mkdirSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { dirname, join } from 'node:path';
import pino from 'pino';
import postgres from 'postgres';
import { describe, expect, it } from 'vitest';
import { parseFlagConfig } from '../flags/flag-config.js';
import { replaceFile } from '../flags/flag-file.js';
import { fileFlagStore } from '../flags/flag-store.js';
import { addCanary, nextStep, setMlPercentage, setModelVersion } from '../flags/flag-writer.js';
import type { Database } from '../storage/database.js';
import { freshPglite, freshPostgres, postgresAvailable } from '../test-support/databases.js';
import {
  eventually,
  flagServiceOn,
  flagsDocument,
  postJson,
  silentLogger,
  tempDir,
  testApp,
  testMetrics,
  writeFlags,
} from '../test-support/harness.js';
import { type AuditOptions, createRolloutService } from './rollout-service.js';

const TOKEN = 'test-webhook-token-0123456789';
const hasPostgres = await postgresAvailable();
const rolloutOf = (file: string) => parseFlagConfig(readFileSync(file, 'utf8'));

describe('flag writer', () => {
  it('sets the ML share, keeps the model first, and leaves no temporary file', async () => {
    const { file, flags } = await flagServiceOn({ mlWeight: 10 });
    await flags.close();
    const change = setMlPercentage(file, 25);
    expect(change).toMatchObject({
      changed: true,
      previous: { mlPercentage: 10 },
      next: { mlPercentage: 25 },
    });
    expect(rolloutOf(file).split).toEqual([
      { variant: 'gbt-v2', weight: 25 },
      { variant: 'heuristic', weight: 75 },
    ]);
    expect(setMlPercentage(file, 25).changed).toBe(false);
    expect(readdirSync(dirname(file))).toEqual(['flags.json']);
  });

  it('refuses what flagd or the service would refuse, and leaves the file as it was', async () => {
    const { file, flags } = await flagServiceOn({ mlWeight: 10 });
    await flags.close();
    const before = readFileSync(file, 'utf8');
    expect(() => setMlPercentage(file, 101)).toThrow(/between 0 and 100/);
    expect(() => setModelVersion(file, '')).toThrow(/flagd's schema/);
    expect(readFileSync(file, 'utf8')).toBe(before);
  });

  it('swaps the model version at the same share', async () => {
    const { file, flags } = await flagServiceOn({ mlWeight: 50 });
    await flags.close();
    setModelVersion(file, 'gbt-v3');
    expect(rolloutOf(file)).toMatchObject({
      mlPercentage: 50,
      activeModelVersions: ['gbt-v3'],
      modelVariants: ['gbt-v3'],
    });
  });

  it("adds a canary out of the serving model's share, keeps proportions on enable, and drops it on rollback", async () => {
    const { file, flags } = await flagServiceOn({ mlWeight: 20 });
    await flags.close();
    const change = addCanary(file, 'gbt-v3', 5);
    expect(change.next).toMatchObject({ mlPercentage: 20, activeModelVersions: ['gbt-v2', 'gbt-v3'] });
    expect(change.next.split).toEqual([
      { variant: 'gbt-v2', weight: 15 },
      { variant: 'gbt-v3', weight: 5 },
      { variant: 'heuristic', weight: 80 },
    ]);
    expect(addCanary(file, 'gbt-v3', 5).next.split?.[1]).toEqual({ variant: 'gbt-v3', weight: 10 });

    setMlPercentage(file, 40);
    expect(rolloutOf(file).split).toEqual([
      { variant: 'gbt-v2', weight: 20 },
      { variant: 'gbt-v3', weight: 20 },
      { variant: 'heuristic', weight: 60 },
    ]);
    setMlPercentage(file, 0);
    expect(rolloutOf(file)).toMatchObject({ mlPercentage: 0, activeModelVersions: [] });
    setMlPercentage(file, 10);
    expect(rolloutOf(file).activeModelVersions).toEqual(['gbt-v2']);
  });

  it('refuses a canary without room, of the serving model itself, or beside another canary', async () => {
    const { file, flags } = await flagServiceOn({ mlWeight: 10 });
    await flags.close();
    const before = readFileSync(file, 'utf8');
    expect(() => addCanary(file, 'gbt-v3', 11)).toThrow(/serves 10%.*enable more first/);
    expect(() => addCanary(file, 'gbt-v3', 10)).toThrow(/leave it some/);
    expect(() => addCanary(file, 'gbt-v2', 5)).toThrow(/another model serving first/);
    expect(() => addCanary(file, 'gbt-v3', 2.5)).toThrow(/whole number/);
    expect(readFileSync(file, 'utf8')).toBe(before);
    addCanary(file, 'gbt-v3', 5);
    expect(() => addCanary(file, 'gbt-v4', 1)).toThrow(/gbt-v3 already takes traffic/);
    setModelVersion(file, 'gbt-v3');
    expect(rolloutOf(file)).toMatchObject({ mlPercentage: 10, activeModelVersions: ['gbt-v3'] });
  });

  it('removes its temporary file whenever the replacement fails (here: a folder stands at the target)', () => {
    const dir = tempDir();
    const target = join(dir, 'flags.json');
    mkdirSync(target);
    writeFileSync(join(target, 'stray.json'), '{}');
    expect(() => replaceFile(target, '{}\n')).toThrow(/EISDIR/);
    expect(readdirSync(dir)).toEqual(['flags.json']);
  });

  it('refuses a FIFO or a device at the flag path without blocking on it, and without reading it', async () => {
    const dir = tempDir();
    const fifo = join(dir, 'flags.json');
    const mkfifo = spawn('mkfifo', [fifo]);
    await new Promise((resolve) => mkfifo.once('exit', resolve));
    // A writer that opens the FIFO and closes it 2 s later: a blocking read would wait for it, then read nothing.
    const writer = spawn('sh', ['-c', `exec sleep 2 > '${fifo}'`]);
    try {
      expect(() => setMlPercentage(fifo, 0)).toThrow(/is a FIFO, not a regular file/);
      await expect(fileFlagStore(fifo, silentLogger).read()).rejects.toThrow(/a FIFO/);
    } finally {
      writer.kill();
    }
    const device = join(tempDir(), 'flags.json');
    symlinkSync('/dev/null', device);
    expect(() => setMlPercentage(device, 0)).toThrow(/is a character device, not a regular file/);
  });

  it('promotes along 10, 25, 50, 100', () => {
    expect([0, 5, 10, 25, 50, 99].map(nextStep)).toEqual([10, 10, 25, 50, 100, 100]);
    expect(nextStep(100)).toBeNull();
  });
});

describe('rollback webhook', () => {
  const alert = (overrides: Record<string, unknown> = {}) => ({
    status: 'firing',
    labels: {
      alertname: 'DelayModelLosingToRulesFast',
      severity: 'critical',
      rollback: 'true',
      signal: 'feedback',
    },
    annotations: { summary: 'ML MAE 6.00 min over 5 min for gbt-v2, worse than the rules' },
    fingerprint: 'abc123',
    ...overrides,
  });
  const payload = (alerts: unknown[]) => ({
    version: '4',
    status: 'firing',
    receiver: 'rollback-webhook',
    alerts,
  });

  async function webhookApp(
    options: { database?: Database; audit?: AuditOptions; logger?: pino.Logger } = {},
  ) {
    const db = options.database ?? (await freshPglite());
    const m = testMetrics();
    const { file, flags } = await flagServiceOn({ mlWeight: 50 }, m.metrics);
    const rollout = createRolloutService({
      flagsFile: file,
      db: db.db,
      metrics: m.metrics,
      logger: options.logger ?? silentLogger,
      routing: flags,
      ...(options.audit ? { audit: options.audit } : {}),
    });
    const t = await testApp({ deps: { flags, rollback: { token: TOKEN, rollout } } });
    const send = (body: unknown, token = TOKEN) =>
      t.app.request('/v1/webhooks/alertmanager', {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
        body: JSON.stringify(body),
      });
    return {
      ...t,
      db,
      file,
      rollout,
      send,
      metricValue: m.value,
      appMetricValue: t.metricValue,
      close: async () => {
        await t.close();
        await db.close();
      },
    };
  }

  it('rolls back from a post of 3,000 alerts over the API body limit; its token is checked first', async () => {
    const w = await webhookApp();
    try {
      const quiet = Array.from({ length: 2999 }, (_, i) =>
        alert({
          labels: { alertname: `Other${i}`, severity: 'warning' },
          annotations: { summary: 'x'.repeat(600) },
          fingerprint: `f${i}`,
        }),
      );
      const body = payload([...quiet, alert()]);
      expect(JSON.stringify(body).length).toBeGreaterThan(1024 * 1024);
      expect((await w.send(body, 'wrong-token-0123456789')).status).toBe(401);
      expect(rolloutOf(w.file).mlPercentage).toBe(50);
      const res = await w.send(body);
      expect(res.status).toBe(200);
      const { results, ml_percentage } = await res.json();
      expect(results).toHaveLength(3000);
      expect(results.at(-1)).toEqual({ alertname: 'DelayModelLosingToRulesFast', outcome: 'rolled_back' });
      expect(ml_percentage).toBe(0);
      expect(rolloutOf(w.file).mlPercentage).toBe(0);
    } finally {
      await w.close();
    }
  });

  it('rolls back from the last accepted configuration when the flag file is broken; a person cannot', async () => {
    const w = await webhookApp();
    try {
      writeFileSync(w.file, '{"flags": {"delay-model": ');
      await eventually(
        () => w.flags.status().last_error,
        (e) => e !== null,
      );
      expect(w.flags.status().ml_percentage).toBe(50);
      await expect(w.rollout.setPercentage(25, { actor: 'cli', action: 'enable' })).rejects.toThrow();
      const res = await w.send(payload([alert()]));
      expect(res.status).toBe(200);
      expect(await res.json()).toMatchObject({ ml_percentage: 0 });
      expect(rolloutOf(w.file).mlPercentage).toBe(0);
      await eventually(
        () => w.flags.status().ml_percentage,
        (p) => p === 0,
      );
      expect((await w.rollout.history(1))[0]).toMatchObject({
        action: 'rollback',
        previousWeight: 50,
        newWeight: 0,
      });
    } finally {
      await w.close();
    }
  });

  it('stops ML in this process when a folder stands where the flag file was, answers 503 until the file is back, then writes', async () => {
    const w = await webhookApp();
    try {
      const original = readFileSync(w.file, 'utf8');
      rmSync(w.file);
      mkdirSync(w.file);
      writeFileSync(`${w.file}/stray.json`, '{}');
      await eventually(
        () => w.flags.status().last_error,
        (e) => e !== null,
      );
      for (const attempt of [1, 2]) {
        const res = await w.send(payload([alert()]));
        expect(res.status, `attempt ${attempt}`).toBe(503);
        const problem = await res.json();
        expect(problem.type).toBe('/problems/rollback-not-written');
        expect(problem.detail).toMatch(
          /this process routes every booking to the heuristic, but cannot write/,
        );
      }
      expect(w.flags.status()).toMatchObject({
        ml_percentage: 0,
        last_error: { message: /this process routes/ },
      });
      // Within the poll interval the provider routes on the rolled-back copy: 200 bookings, none to ML.
      await eventually(
        async () =>
          new Set(
            await Promise.all(
              Array.from({ length: 200 }, (_, i) => w.flags.modelVariant(`b-${i}`).then((a) => a.variant)),
            ),
          ),
        (variants) => variants.size === 1 && variants.has('heuristic'),
      );
      const history = await w.rollout.history();
      expect(history).toHaveLength(1);
      expect(history[0]).toMatchObject({ action: 'rollback', previousWeight: 50, newWeight: 0 });
      expect(history[0]?.reason).toMatch(/this process only: cannot write/);
      expect(await w.metricValue('delay.webhook.alerts', { outcome: 'rolled_back_here_only' })).toBe(2);
      expect(await w.appMetricValue('delay.http.rejected_requests', { reason: 'rollback_not_written' })).toBe(
        2,
      );
      // Each failed rename removed its temporary file.
      expect(readdirSync(dirname(w.file)).filter((name) => name.endsWith('.tmp'))).toEqual([]);

      // The file comes back as it was: it is the source of truth again, and the next post writes the rollback.
      rmSync(w.file, { recursive: true });
      writeFileSync(`${w.file}.restore`, original);
      renameSync(`${w.file}.restore`, w.file);
      await eventually(
        () => w.flags.status(),
        (s) => s.ml_percentage === 50 && s.last_error === null,
      );
      const res = await w.send(payload([alert()]));
      expect(res.status).toBe(200);
      expect(rolloutOf(w.file).mlPercentage).toBe(0);
    } finally {
      await w.close();
    }
  });

  it('refuses a missing or wrong token', async () => {
    const w = await webhookApp();
    try {
      expect((await postJson(w.app, '/v1/webhooks/alertmanager', payload([alert()]))).status).toBe(401);
      expect((await w.send(payload([alert()]), 'wrong-token-0123456789')).status).toBe(401);
      expect(rolloutOf(w.file).mlPercentage).toBe(50);
    } finally {
      await w.close();
    }
  });

  it('sets ML to 0% on a rollback alert, audits it, and turns repeats into no-ops', async () => {
    const w = await webhookApp();
    try {
      const first = await (await w.send(payload([alert()]))).json();
      expect(first).toEqual({
        results: [{ alertname: 'DelayModelLosingToRulesFast', outcome: 'rolled_back' }],
        ml_percentage: 0,
        audit: 'written',
      });
      expect(rolloutOf(w.file).mlPercentage).toBe(0);
      const status = await eventually(
        () => w.flags.status(),
        (s) => s.ml_percentage === 0,
      );
      expect(status.ml_enabled).toBe(false);

      const repeats = await (await w.send(payload(Array.from({ length: 1000 }, () => alert())))).json();
      expect(new Set(repeats.results.map((r: { outcome: string }) => r.outcome))).toEqual(
        new Set(['already_rolled_back']),
      );
      const history = await w.rollout.history();
      expect(history).toHaveLength(1);
      expect(history[0]).toMatchObject({
        actor: 'alertmanager',
        action: 'rollback',
        previousWeight: 50,
        newWeight: 0,
        alertName: 'DelayModelLosingToRulesFast',
        fingerprint: 'abc123',
        modelVersion: 'gbt-v2',
        reason: 'feedback signal: ML MAE 6.00 min over 5 min for gbt-v2, worse than the rules',
        labels: expect.objectContaining({ signal: 'feedback' }),
      });
      expect(
        await w.metricValue('delay.rollout.rollbacks', { alertname: 'DelayModelLosingToRulesFast' }),
      ).toBe(1);
    } finally {
      await w.close();
    }
  });

  it('never re-enables ML on a resolved alert, and ignores alerts without rollback="true"', async () => {
    const w = await webhookApp();
    try {
      await w.send(payload([alert()]));
      const resolved = await (await w.send(payload([alert({ status: 'resolved' })]))).json();
      expect(resolved.results).toEqual([{ alertname: 'DelayModelLosingToRulesFast', outcome: 'ignored' }]);
      expect(rolloutOf(w.file).mlPercentage).toBe(0);

      await w.rollout.setPercentage(30, { actor: 'test', action: 'enable' });
      const warning = alert({ labels: { alertname: 'DelayModelMaeDegraded', severity: 'warning' } });
      expect((await (await w.send(payload([warning]))).json()).results[0].outcome).toBe('ignored');
      expect(rolloutOf(w.file).mlPercentage).toBe(30);
    } finally {
      await w.close();
    }
  });

  it('answers an alert naming a version the flag does not route to with not_served, and rolls back the one it does', async () => {
    const w = await webhookApp();
    try {
      const about = (version: string) =>
        alert({ labels: { ...alert().labels, model_version: version }, fingerprint: `fp-${version}` });
      // Late feedback of a replaced version, twice in one post: looked up once, nothing changed.
      const retired = await w.send(payload([about('gbt-v0'), about('gbt-v0')]));
      expect(retired.status).toBe(200);
      expect(await retired.json()).toEqual({
        results: [
          { alertname: 'DelayModelLosingToRulesFast', outcome: 'not_served', model_version: 'gbt-v0' },
          { alertname: 'DelayModelLosingToRulesFast', outcome: 'not_served', model_version: 'gbt-v0' },
        ],
        ml_percentage: 50,
        audit: 'none',
      });
      expect(rolloutOf(w.file).split).toEqual([
        { variant: 'gbt-v2', weight: 50 },
        { variant: 'heuristic', weight: 50 },
      ]);
      expect(await w.rollout.history()).toEqual([]);
      expect(await w.metricValue('delay.webhook.alerts', { outcome: 'not_served' })).toBe(2);
      expect(await w.metricValue('delay.rollout.rollbacks')).toBe(0);

      // A canary is served: an alert about it takes every model out, the canary with them.
      await w.rollout.canary('gbt-v3', 5, { actor: 'cli', action: 'canary', modelVersion: 'gbt-v3' });
      const unknown = await (await w.send(payload([about('gbt-v4')]))).json();
      expect(unknown.results[0].outcome).toBe('not_served');
      const canary = await (await w.send(payload([about('gbt-v0'), about('gbt-v3')]))).json();
      expect(canary.results.map((r: { outcome: string }) => r.outcome)).toEqual([
        'not_served',
        'rolled_back',
      ]);
      expect(rolloutOf(w.file)).toMatchObject({ mlPercentage: 0, activeModelVersions: [] });
      expect((await w.rollout.history(1))[0]).toMatchObject({
        action: 'rollback',
        previousWeight: 50,
        newWeight: 0,
        labels: expect.objectContaining({ model_version: 'gbt-v3' }),
      });
      // Rolled back: every alert after that is already done, whichever version it names.
      const after = await (await w.send(payload([about('gbt-v2'), about('gbt-v0')]))).json();
      expect(after.results.map((r: { outcome: string }) => r.outcome)).toEqual([
        'already_rolled_back',
        'already_rolled_back',
      ]);
      expect(await w.metricValue('delay.webhook.alerts', { outcome: 'not_served' })).toBe(4);
      expect(await w.metricValue('delay.webhook.alerts', { outcome: 'rolled_back' })).toBe(1);
    } finally {
      await w.close();
    }
  });

  it('answers a rollback on a flag of the heuristic alone as already rolled back', async () => {
    const w = await webhookApp();
    try {
      const doc = flagsDocument({ mlWeight: 0 });
      const heuristicOnly = {
        ...doc,
        flags: {
          ...doc.flags,
          'delay-model': {
            state: 'ENABLED',
            variants: { heuristic: 'heuristic' },
            defaultVariant: 'heuristic',
          },
        },
      };
      writeFlags(w.file, heuristicOnly);
      const before = readFileSync(w.file, 'utf8');
      const res = await w.send(payload([alert(), alert()]));
      expect(res.status).toBe(200);
      expect(await res.json()).toEqual({
        results: [
          { alertname: 'DelayModelLosingToRulesFast', outcome: 'already_rolled_back' },
          { alertname: 'DelayModelLosingToRulesFast', outcome: 'already_rolled_back' },
        ],
        ml_percentage: 0,
        audit: 'none',
      });
      expect(readFileSync(w.file, 'utf8')).toBe(before);
      expect(await w.rollout.history()).toEqual([]);
      expect(await w.metricValue('delay.webhook.alerts', { outcome: 'already_rolled_back' })).toBe(2);
      // A person's disable is the same no-op; an enable has no model to enable.
      expect((await w.rollout.setPercentage(0, { actor: 'cli', action: 'disable' })).changed).toBe(false);
      await expect(w.rollout.setPercentage(10, { actor: 'cli', action: 'enable' })).rejects.toThrow(
        /declares no model variant/,
      );
    } finally {
      await w.close();
    }
  });

  describe.skipIf(!hasPostgres)('with its audit table on a real Postgres', () => {
    /** A logger whose lines the test reads. */
    const capture = () => {
      const lines: string[] = [];
      return { lines, logger: pino({ level: 'info' }, { write: (line: string) => lines.push(line) }) };
    };

    it('answers a rollback while another session locks flag_changes, queues nothing behind the row, and stores it once the lock goes', async () => {
      const database = await freshPostgres();
      const log = capture();
      const w = await webhookApp({
        database,
        audit: { timeoutMs: 300, retryDelaysMs: [100] },
        logger: log.logger,
      });
      const locker = postgres(database.url, { max: 1, onnotice: () => {} });
      const held = await locker.reserve();
      try {
        await held`begin`;
        await held`lock table flag_changes in access exclusive mode`;
        const res = await w.send(payload([alert()]));
        expect(res.status).toBe(200);
        expect(await res.json()).toMatchObject({
          results: [{ outcome: 'rolled_back' }],
          ml_percentage: 0,
          audit: 'late',
        });
        expect(rolloutOf(w.file).mlPercentage).toBe(0);
        // The changes after it are not queued behind its waiting row.
        const enable = await w.rollout.setPercentage(20, { actor: 'cli', action: 'enable' });
        expect(enable).toMatchObject({ changed: true, audit: 'late' });
        expect(await (await w.send(payload([alert()]))).json()).toMatchObject({
          ml_percentage: 0,
          audit: 'late',
        });
        expect(await w.metricValue('delay.rollout.audit_writes', { outcome: 'late' })).toBe(3);
        const waiting = log.lines.filter((l) => l.includes('audit row not stored in time'));
        expect(waiting).toHaveLength(3);
        expect(JSON.parse(waiting[0] as string).audit_row).toMatchObject({
          action: 'rollback',
          previousWeight: 50,
          newWeight: 0,
          alertName: 'DelayModelLosingToRulesFast',
        });

        await held`commit`;
        const rows = await eventually(
          () => w.rollout.history(),
          (r) => r.length === 3,
        );
        expect(rows.map((r) => [r.action, r.previousWeight, r.newWeight])).toEqual([
          ['rollback', 20, 0],
          ['enable', 0, 20],
          ['rollback', 50, 0],
        ]);
        await eventually(
          () => log.lines.filter((l) => l.includes('audit row stored late')).length,
          (n) => n === 3,
        );
        expect(await w.metricValue('delay.rollout.audit_writes', { outcome: 'failed' })).toBe(0);
      } finally {
        held.release();
        await locker.end({ timeout: 1 });
        await w.close();
      }
    });

    it('counts and logs the rows still waiting when the service stops', async () => {
      const database = await freshPostgres();
      const log = capture();
      const w = await webhookApp({ database, audit: { timeoutMs: 300 }, logger: log.logger });
      const locker = postgres(database.url, { max: 1, onnotice: () => {} });
      const held = await locker.reserve();
      try {
        await held`begin`;
        await held`lock table flag_changes in access exclusive mode`;
        expect(await (await w.send(payload([alert()]))).json()).toMatchObject({ audit: 'late' });
        await w.rollout.close(200);
        expect(await w.metricValue('delay.rollout.audit_writes', { outcome: 'failed' })).toBe(1);
        expect(log.lines.filter((l) => l.includes('audit rows not stored before shutdown'))).toHaveLength(1);
      } finally {
        await held`rollback`;
        held.release();
        await locker.end({ timeout: 1 });
        await w.close();
      }
    });

    it('still answers the rollback when the database refuses its row, and logs the row in full', async () => {
      const database = await freshPostgres();
      const log = capture();
      const w = await webhookApp({
        database,
        audit: { timeoutMs: 5000, retryDelaysMs: [50, 50] },
        logger: log.logger,
      });
      const admin = postgres(database.url, { max: 1, onnotice: () => {} });
      try {
        await admin`alter table flag_changes add constraint refuse_every_row check (false) not valid`;
        const res = await w.send(payload([alert()]));
        expect(res.status).toBe(200);
        expect(await res.json()).toMatchObject({ ml_percentage: 0, audit: 'failed' });
        expect(rolloutOf(w.file).mlPercentage).toBe(0);
        expect(await w.metricValue('delay.rollout.audit_writes', { outcome: 'failed' })).toBe(1);
        const lost = log.lines.filter((l) => l.includes('never stored'));
        expect(lost).toHaveLength(1);
        expect(JSON.parse(lost[0] as string)).toMatchObject({
          attempts: 3,
          audit_row: { action: 'rollback', fingerprint: 'abc123', newWeight: 0 },
        });
      } finally {
        await admin.end({ timeout: 1 });
        await w.close();
      }
    });
  });

  it('does not exist without a token', async () => {
    const t = await testApp();
    try {
      expect((await postJson(t.app, '/v1/webhooks/alertmanager', payload([alert()]))).status).toBe(404);
    } finally {
      await t.close();
    }
  });
});

describe('rollout without a database', () => {
  it('still changes the file, and its history is empty', async () => {
    const { file, flags } = await flagServiceOn({ mlWeight: 10 });
    await flags.close();
    const rollout = createRolloutService({ flagsFile: file, logger: silentLogger });
    expect((await rollout.setPercentage(0, { actor: 'cli', action: 'disable' })).changed).toBe(true);
    expect(await rollout.history()).toEqual([]);
  });
});
