import { execFile, spawnSync } from 'node:child_process';
import { copyFileSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { parseFlagConfig } from '../flags/flag-config.js';
import { createModelStore, readModelFiles } from '../models/model-store.js';
import { freshPostgres, postgresAvailable } from '../test-support/databases.js';
import { tempDir } from '../test-support/harness.js';

const hasPostgres = await postgresAvailable();
const database = hasPostgres ? await freshPostgres() : undefined;
afterAll(() => database?.close());

/** Registers `version` of `dir` in the test's model registry, as npm run models -- push would. */
async function register(dir: string, version: string) {
  if (!database) return;
  await createModelStore(database.db, database.kind).push({
    version,
    ...(await readModelFiles(dir, version)),
    by: 'test',
  });
}

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

interface Run {
  status: number | null;
  stdout: string;
  stderr: string;
}

// Asynchronous: a blocking spawn of a second or two, many times over, stalls the test worker.
const run = (env: Record<string, string>, args: string[]) =>
  new Promise<Run>((resolve) => {
    execFile(
      process.execPath,
      ['--import', 'tsx', 'service/cli/rollout-cli.ts', ...args],
      {
        encoding: 'utf8',
        env: { PATH: process.env.PATH ?? '', ...(database ? { DATABASE_URL: database.url } : {}), ...env },
      },
      (err, stdout, stderr) =>
        resolve({ status: err ? (typeof err.code === 'number' ? err.code : null) : 0, stdout, stderr }),
    );
  });
const rollout = (file: string, ...args: string[]) => run({ FLAGS_FILE: file }, args);

/** A models folder serving gbt-v2 and gbt-v3 (gbt-v2's graph under a card of its own). */
function modelsWithChallenger() {
  const dir = tempDir('delay-models-');
  for (const ext of ['onnx', 'json']) copyFileSync(`models/gbt-v2.${ext}`, join(dir, `gbt-v2.${ext}`));
  copyFileSync('models/gbt-v2.onnx', join(dir, 'gbt-v3.onnx'));
  const card = JSON.parse(readFileSync('models/gbt-v2.json', 'utf8'));
  writeFileSync(
    join(dir, 'gbt-v3.json'),
    JSON.stringify({ ...card, version: 'gbt-v3', onnx: { ...card.onnx, file: 'gbt-v3.onnx' } }),
  );
  return dir;
}
const share = (file: string) => parseFlagConfig(readFileSync(file, 'utf8')).mlPercentage;

describe('npm run rollout', () => {
  it('promotes 10 -> 25 -> 50 -> 100 and then refuses, one command each', async () => {
    const file = repoWithFlags();
    for (const expected of [25, 50, 100]) {
      const promoted = await rollout(file, 'promote');
      expect(promoted.status, promoted.stderr).toBe(0);
      expect(share(file)).toBe(expected);
    }
    const done = await rollout(file, 'promote');
    expect(done.status).toBe(2);
    expect(done.stderr).toContain('already at 100%');
  });

  it('enables a percentage, disables, and validates its arguments', async () => {
    const file = repoWithFlags();
    expect((await rollout(file, 'enable', '--percentage', '40')).status).toBe(0);
    expect(share(file)).toBe(40);
    expect((await rollout(file, 'enable', '--percentage', '140')).stderr).toContain('from 0 to 100');
    expect((await rollout(file, 'enable')).status).toBe(2);
    expect((await rollout(file, 'disable')).status).toBe(0);
    expect(share(file)).toBe(0);
    await register('models', 'gbt-v2');
    const missing = await rollout(file, 'set-model', 'gbt-v9');
    expect(missing.status).toBe(2);
    expect(missing.stderr).toContain('no model "gbt-v9"');
    expect((await rollout(file, 'set-model', 'gbt-v2')).status).toBe(0);
  });

  it('refuses a percentage that is not a whole number from 0 to 100, an empty one included, and changes nothing', async () => {
    const file = repoWithFlags();
    const before = readFileSync(file, 'utf8');
    const bad = ['', ' ', '5.5', '1e1', '101', 'ten'];
    const refused = await Promise.all(bad.map((value) => rollout(file, 'enable', '--percentage', value)));
    bad.forEach((value, i) => {
      expect(refused[i]?.status, `--percentage ${JSON.stringify(value)}`).toBe(2);
      expect(refused[i]?.stderr).toContain(
        `--percentage must be a whole number from 0 to 100, got ${JSON.stringify(value)}`,
      );
    });
    expect((await rollout(file, 'canary', 'gbt-v2', '--percentage', '')).status).toBe(2);
    expect(readFileSync(file, 'utf8')).toBe(before);
  });

  it('refuses a version the model registry does not hold, before the flag names it', async () => {
    const file = repoWithFlags();
    const before = readFileSync(file, 'utf8');
    // The card is found, but the service reads models/../models/gbt-v2.json as gbt-v2, not as that name.
    const bad = ['../models/gbt-v2', 'gbt-v2/../gbt-v2', ''];
    const refused = await Promise.all(bad.map((version) => rollout(file, 'set-model', version)));
    bad.forEach((version, i) => {
      expect(refused[i]?.status, version).toBe(2);
      expect(refused[i]?.stderr).toContain(`no model ${JSON.stringify(version)} the service can load`);
    });
    expect(readFileSync(file, 'utf8')).toBe(before);
  });

  it('reads the VERSION of canary wherever its options stand', async () => {
    const file = repoWithFlags();
    const models = modelsWithChallenger();
    await register(models, 'gbt-v3');
    const canary = await run({ FLAGS_FILE: file, MODELS_DIR: models }, [
      'canary',
      '--percentage',
      '5',
      'gbt-v3',
    ]);
    expect(canary.status, canary.stderr).toBe(0);
    const split = parseFlagConfig(readFileSync(file, 'utf8')).split;
    expect(split?.find((s) => s.variant === 'gbt-v3')?.weight).toBe(5);
  });

  it.skipIf(!hasPostgres)(
    'refuses a canary of a version that is only a file where the CLI runs: replicas load from the registry',
    async () => {
      const file = repoWithFlags();
      const before = readFileSync(file, 'utf8');
      const models = modelsWithChallenger();
      copyFileSync(join(models, 'gbt-v3.onnx'), join(models, 'gbt-v4.onnx'));
      const card = JSON.parse(readFileSync(join(models, 'gbt-v3.json'), 'utf8'));
      writeFileSync(
        join(models, 'gbt-v4.json'),
        JSON.stringify({ ...card, version: 'gbt-v4', onnx: { ...card.onnx, file: 'gbt-v4.onnx' } }),
      );
      const refused = await run({ FLAGS_FILE: file, MODELS_DIR: models }, [
        'canary',
        'gbt-v4',
        '--percentage',
        '5',
      ]);
      expect(refused.status).toBe(2);
      expect(refused.stderr.trim()).toBe(
        'no model "gbt-v4" the service can load: it is not registered in the model registry (Postgres at DATABASE_URL); register it with npm run models -- push gbt-v4',
      );
      const retired = await rollout(file, 'set-model', 'gbt-v1');
      expect(retired.status).toBe(2);
      expect(retired.stderr).toContain('no model "gbt-v1" the service can load: the name is retired');
      expect(readFileSync(file, 'utf8')).toBe(before);
    },
  );

  it('answers a usage error with the usage and exit 2, never a stack trace', async () => {
    const file = repoWithFlags();
    const before = readFileSync(file, 'utf8');
    const usageErrors = [
      ['status', '--bogus'],
      ['enable', '--percentage'],
      ['enable', '40'],
      ['disable', 'now'],
      ['disable', '--percentage', '5'],
      ['set-model'],
      ['set-model', 'gbt-v2', 'gbt-v3'],
      ['canary', '--percentage', '5'],
      ['status', '--json=yes'],
      ['launch'],
    ];
    const refused = await Promise.all(usageErrors.map((args) => rollout(file, ...args)));
    usageErrors.forEach((args, i) => {
      expect(refused[i]?.status, args.join(' ')).toBe(2);
      expect(refused[i]?.stderr, args.join(' ')).toContain('usage: npm run rollout --');
      expect(refused[i]?.stderr, args.join(' ')).not.toMatch(/\n\s+at /);
    });
    expect(readFileSync(file, 'utf8')).toBe(before);
  });

  it('shows in status whether the file differs from Git, with the commands that reconcile it', async () => {
    const file = repoWithFlags();
    const clean = JSON.parse((await rollout(file, 'status', '--json')).stdout);
    expect(clean).toMatchObject({
      ml_percentage: 10,
      model_version: 'gbt-v2',
      git: { tracked: true, differs_from_head: false },
    });
    await rollout(file, 'disable');
    const drifted = JSON.parse((await rollout(file, 'status', '--json')).stdout);
    expect(drifted.git.differs_from_head).toBe(true);
    expect(drifted.git.reconcile.restore_git).toBe(`git checkout HEAD -- ${file}`);
  });

  it.skipIf(!hasPostgres)('audits every change in the database, and lists them in history', async () => {
    const file = repoWithFlags();
    await rollout(file, 'enable', '--percentage', '25', '--reason', 'canary looks healthy');
    await rollout(file, 'disable');
    const history = JSON.parse((await rollout(file, 'history', '--json')).stdout) as {
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
