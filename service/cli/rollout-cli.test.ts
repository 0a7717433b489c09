import { spawnSync } from 'node:child_process';
import { copyFileSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { parseFlagConfig } from '../flags/flag-config.js';
import { freshPostgres, postgresAvailable } from '../test-support/databases.js';
import { tempDir } from '../test-support/harness.js';

const hasPostgres = await postgresAvailable();
const database = hasPostgres ? await freshPostgres() : undefined;
afterAll(() => database?.close());

function repoWithFlags() {
  const dir = tempDir('delay-rollout-');
  copyFileSync('flagd/flags.json', join(dir, 'flags.json'));
  const git = (...args: string[]) =>
    spawnSync('git', ['-C', dir, '-c', 'user.email=t@t', '-c', 'user.name=t', ...args]);
  git('init', '-q');
  git('add', '.');
  git('commit', '-qm', 'flags');
  return join(dir, 'flags.json');
}

const rollout = (file: string, ...args: string[]) =>
  spawnSync(process.execPath, ['--import', 'tsx', 'service/cli/rollout-cli.ts', ...args], {
    encoding: 'utf8',
    env: {
      PATH: process.env.PATH ?? '',
      FLAGS_FILE: file,
      ...(database ? { DATABASE_URL: database.url } : {}),
    },
  });
const share = (file: string) => parseFlagConfig(readFileSync(file, 'utf8')).mlPercentage;

describe('npm run rollout', () => {
  it('promotes 10 -> 25 -> 50 -> 100 and then refuses, one command each', () => {
    const file = repoWithFlags();
    for (const expected of [25, 50, 100]) {
      const run = rollout(file, 'promote');
      expect(run.status, run.stderr).toBe(0);
      expect(share(file)).toBe(expected);
    }
    const done = rollout(file, 'promote');
    expect(done.status).toBe(2);
    expect(done.stderr).toContain('already at 100%');
  });

  it('enables a percentage, disables, and validates its arguments', () => {
    const file = repoWithFlags();
    expect(rollout(file, 'enable', '--percentage', '40').status).toBe(0);
    expect(share(file)).toBe(40);
    expect(rollout(file, 'enable', '--percentage', '140').stderr).toContain('between 0 and 100');
    expect(rollout(file, 'enable').status).toBe(2);
    expect(rollout(file, 'disable').status).toBe(0);
    expect(share(file)).toBe(0);
    const missing = rollout(file, 'set-model', 'gbt-v9');
    expect(missing.status).toBe(2);
    expect(missing.stderr).toContain('no model gbt-v9');
    expect(rollout(file, 'set-model', 'gbt-v1').status).toBe(0);
  });

  it('shows in status whether the file differs from Git, with the commands that reconcile it', () => {
    const file = repoWithFlags();
    const clean = JSON.parse(rollout(file, 'status', '--json').stdout);
    expect(clean).toMatchObject({
      ml_percentage: 10,
      model_version: 'gbt-v1',
      git: { tracked: true, differs_from_head: false },
    });
    rollout(file, 'disable');
    const drifted = JSON.parse(rollout(file, 'status', '--json').stdout);
    expect(drifted.git.differs_from_head).toBe(true);
    expect(drifted.git.reconcile.restore_git).toBe(`git checkout HEAD -- ${file}`);
  });

  it.skipIf(!hasPostgres)('audits every change in the database, and lists them in history', () => {
    const file = repoWithFlags();
    rollout(file, 'enable', '--percentage', '25', '--reason', 'canary looks healthy');
    rollout(file, 'disable');
    const history = JSON.parse(rollout(file, 'history', '--json').stdout) as {
      action: string;
      newWeight: number;
      reason: string | null;
    }[];
    expect(history.slice(0, 2).map((h) => [h.action, h.newWeight])).toEqual([
      ['disable', 0],
      ['enable', 25],
    ]);
    expect(history[1]?.reason).toBe('canary looks healthy');
  });
});

describe('npm run rollout on Kubernetes (FLAGS_FEATUREFLAG, stand-in API server)', () => {
  it('disables through the API and shows how the live FeatureFlag differs from Git, with both ways back', async () => {
    const { startKubernetesApiStandIn } = await import('../test-support/kubernetes-api-stand-in.js');
    const { execFile } = await import('node:child_process');
    const { promisify } = await import('node:util');
    const file = repoWithFlags();
    const api = await startKubernetesApiStandIn({
      namespace: 'delay-prediction',
      name: 'delay-prediction',
      flags: JSON.parse(readFileSync(file, 'utf8')).flags,
    });
    try {
      const run = (...args: string[]) =>
        promisify(execFile)(process.execPath, ['--import', 'tsx', 'service/cli/rollout-cli.ts', ...args], {
          encoding: 'utf8',
          env: {
            PATH: process.env.PATH ?? '',
            FLAGS_FILE: file,
            FLAGS_FEATUREFLAG: 'delay-prediction/delay-prediction',
            KUBERNETES_API_URL: api.url,
            KUBERNETES_TOKEN_FILE: join(tempDir(), 'absent-token'),
          },
        });
      const before = JSON.parse((await run('status', '--json')).stdout);
      expect(before.git).toMatchObject({ differs_from_git: false });
      const disabled = await run('disable');
      expect(disabled.stdout).toContain('-> 0%');
      expect(parseFlagConfig(JSON.stringify({ flags: api.flags() })).mlPercentage).toBe(0);
      expect(share(file)).toBeGreaterThan(0);
      const after = JSON.parse((await run('status', '--json')).stdout);
      expect(after).toMatchObject({
        featureflag: 'featureflags/delay-prediction in namespace delay-prediction',
        ml_percentage: 0,
        git: { differs_from_git: true, reconcile: { restore_git: 'kubectl apply -k deploy/kubernetes' } },
      });
    } finally {
      await api.close();
    }
  });
});
