import { execFile, spawnSync } from 'node:child_process';
import { readdirSync, readFileSync, rmSync } from 'node:fs';
import { join, relative } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import {
  buildStages,
  instructions,
  productionPackages,
  type Stage,
} from './service/test-support/dockerfile.js';
import { booking } from './service/test-support/harness.js';
import { startService, waitForReady } from './service/test-support/process.js';

/*
 * No Docker engine runs on the development machines: the image is built here as the Dockerfile says
 * (service/test-support/dockerfile.ts), and the compiled service it holds is started with the image's command.
 */
describe('Dockerfile', () => {
  const dockerfile = instructions(readFileSync('Dockerfile', 'utf8'));
  const pinned = readFileSync('.node-version', 'utf8').trim();

  it("runs the Node release CI runs: .node-version's, in every stage", () => {
    expect(pinned).toMatch(/^\d+\.\d+\.\d+$/);
    expect(dockerfile[0]).toEqual({ keyword: 'ARG', args: `NODE_VERSION=${pinned}` });
    const froms = dockerfile.filter((i) => i.keyword === 'FROM').map((i) => i.args.split(/\s+/)[0]);
    expect(froms.length).toBeGreaterThan(1);
    for (const from of froms) expect(from).toMatch(/^node:\$\{NODE_VERSION\}-bookworm-slim$/);
    // .ci/run takes its Node from the same file (ci-node.test.ts runs that step).
    expect(readFileSync('.ci/run', 'utf8')).toMatch(/^\. \.ci\/node$/m);
    expect(readFileSync('.ci/node', 'utf8')).toContain('.node-version');
    const engines = JSON.parse(readFileSync('package.json', 'utf8')).engines.node as string;
    expect(engines).toBe(`>=${pinned.split('.')[0]}`);
  });
});

describe('the image, built as the Dockerfile says without a Docker engine', () => {
  let stages: Stage[] = [];
  let image: Stage;
  const files = (root: string, dir = root): string[] =>
    readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
      const path = join(dir, entry.name);
      if (entry.name === 'node_modules' && dir === root) return [];
      return entry.isDirectory() ? files(root, path) : [relative(root, path)];
    });

  beforeAll(async () => {
    stages = await buildStages('.');
    image = stages.at(-1) as Stage;
  }, 180_000);
  afterAll(() => {
    for (const stage of stages) rmSync(stage.root, { recursive: true, force: true });
  });

  it('runs in production mode as the unprivileged node user, on the ports the stack maps', () => {
    expect(image.env).toEqual({ NODE_ENV: 'production' });
    expect(image.user).toBe('node');
    const service = (
      parse(readFileSync('docker-compose.yml', 'utf8')) as {
        services: { service: { environment: Record<string, string> } };
      }
    ).services.service;
    expect(image.expose).toEqual([
      Number(service.environment.PORT),
      Number(service.environment.METRICS_PORT),
    ]);
  });

  it('installs the development tools in the build stage only', () => {
    expect(stages.map((s) => s.installs)).toEqual([['all'], ['production']]);
    const production = productionPackages('.');
    expect(production).toContain('hono');
    expect(production).toContain('onnxruntime-node');
    for (const tool of ['tsx', 'esbuild', 'vitest', 'typescript', '@biomejs/biome', 'drizzle-kit'])
      expect(production, tool).not.toContain(tool);
    expect(production.filter((name) => name.startsWith('@esbuild/'))).toEqual([]);
    const installed = readdirSync(join(image.root, 'node_modules')).flatMap((name) =>
      name.startsWith('@')
        ? readdirSync(join(image.root, 'node_modules', name)).map((inner) => `${name}/${inner}`)
        : [name],
    );
    expect(installed.sort()).toEqual(production);
  });

  it('holds compiled JavaScript and the files it reads, no TypeScript, no test', () => {
    const held = files(image.root);
    expect(held).toContain('service/main.js');
    expect(held).toContain('service/cli/rollout-cli.js');
    expect(held).toContain('db/schema.js');
    expect(held.filter((f) => f.endsWith('.ts'))).toEqual([]);
    expect(held.filter((f) => /\.test\.|test-support/.test(f))).toEqual([]);
    const assets = held.filter((f) => !f.endsWith('.js')).sort();
    expect(assets).toEqual(
      [
        '.npmrc',
        'package.json',
        'package-lock.json',
        'service/flags/flagd-sync.proto',
        'slo/prediction-availability.yaml',
        'slo/prediction-latency.yaml',
        ...readdirSync('db/migrations', { recursive: true, withFileTypes: true })
          .filter((e) => e.isFile())
          .map((e) => relative('.', join(e.parentPath, e.name))),
        ...readdirSync('models')
          .filter((f) => /\.(onnx|json)$/.test(f))
          .map((f) => `models/${f}`),
        ...readdirSync('flagd').map((f) => `flagd/${f}`),
      ].sort(),
    );
    // Nothing compiled imports a TypeScript file or a development tool.
    for (const file of held.filter((f) => f.endsWith('.js'))) {
      const source = readFileSync(join(image.root, file), 'utf8');
      expect(source, file).not.toMatch(/from '[^']*\.ts'|import\('[^']*\.ts'\)|['"](tsx|vitest|esbuild)['"]/);
    }
  });

  it("answers a prediction and /readyz on embedded defaults, with the image's command", async () => {
    const [node, ...args] = image.cmd ?? [];
    expect(node).toBe('node');
    // FLAGS_FILE and MODELS_DIR unset, DATA_DIR at its default (the harness would give a temp folder): the
    // image's own folder holds the PGlite data, the flags and the model, as in a container without a volume.
    const service = await startService({ ...image.env, DATA_DIR: 'data' }, { args, cwd: image.root });
    try {
      // A fresh PGlite folder: its first start creates the database (tens of seconds on a loaded 2-core machine).
      await waitForReady(service, 120_000);
      const ready = await fetch(`http://127.0.0.1:${service.port}/readyz`);
      expect(ready.status).toBe(200);
      expect(await ready.json()).toMatchObject({ parts: { flags: 'ready', models: 'ready' } });
      const post = (path: string, body: unknown) =>
        fetch(`http://127.0.0.1:${service.port}${path}`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify(body),
        });
      const one = await post('/v1/predictions', booking({ booking_id: 'image-1' }));
      expect(one.status).toBe(200);
      expect(await one.json()).toMatchObject({ booking_id: 'image-1', delay_minutes: expect.any(Number) });
      // flagd/flags.json sends a share of bookings to gbt-v2: ONNX Runtime answers in the image.
      const batch = await post('/v1/predictions/batch', {
        bookings: Array.from({ length: 100 }, (_, i) => booking({ booking_id: `image-batch-${i}` })),
      });
      expect(batch.status).toBe(200);
      const { predictions } = (await batch.json()) as {
        predictions: { source: string; model_version: string }[];
      };
      expect(predictions.filter((p) => p.source === 'ml').length).toBeGreaterThan(0);
      expect(predictions.find((p) => p.source === 'ml')?.model_version).toBe('gbt-v2');
      const metrics = await fetch(`http://127.0.0.1:${service.metricsPort}/metrics`);
      expect(metrics.status).toBe(200);
      expect(await metrics.text()).toMatch(/^delay_predictions_total\{/m);
    } finally {
      expect(await service.stop('SIGTERM'), service.output()).toBe(0);
    }
    expect(service.output()).not.toMatch(/"level":(50|60)/);
  }, 180_000);

  it("runs the model registry's CLI from compiled JavaScript, on a PGlite of its own", async () => {
    // Asynchronous: a blocking spawn of seconds stalls the test worker.
    const models = (...args: string[]) =>
      promisify(execFile)(process.execPath, ['service/cli/models-cli.js', ...args], {
        cwd: image.root,
        encoding: 'utf8',
        env: { PATH: process.env.PATH ?? '', ...image.env, DATA_DIR: 'data-models' },
      });
    // The migration's retired name, then the image's own model from its models/ folder.
    expect((await models('list')).stdout).toMatch(/^gbt-v1 +retired: /m);
    expect((await models('push', 'gbt-v2')).stdout).toMatch(
      /^gbt-v2 registered in the model registry \(PGlite in DATA_DIR\): sha256:[0-9a-f]{64}$/m,
    );
  }, 60_000);

  it('runs the tools and the flagd sync protocol from compiled JavaScript', () => {
    const run = (...args: string[]) =>
      spawnSync(process.execPath, args, {
        cwd: image.root,
        encoding: 'utf8',
        env: { PATH: process.env.PATH ?? '', ...image.env, DATA_DIR: 'data-tools' },
      });
    const status = run('service/cli/rollout-cli.js', 'status');
    expect(status.status, status.stderr).toBe(0);
    expect(JSON.parse(status.stdout)).toMatchObject({
      file: join(image.root, 'flagd/flags.json'),
      model_version: 'gbt-v2',
      ml_percentage: expect.any(Number),
    });
    // The daily report, as its CronJob and compose service run it: an empty day is a report of zeros.
    const daily = run('service/cli/reports-cli.js', 'daily', '--json');
    expect(daily.status, daily.stderr).toBe(0);
    expect(JSON.parse(daily.stdout)).toMatchObject({ ml_share: null, rollbacks: 0, flag_changes: [] });
    const usage = run('service/cli/weather-cli.js');
    expect(usage.status).toBe(2);
    expect(usage.stderr).toContain('usage:');
    const proto = run(
      '--input-type=module',
      '-e',
      "const { flagSyncService } = await import('./service/flags/flagd-sync.js'); console.log(Object.keys(flagSyncService().service).join(','));",
    );
    expect(proto.status, proto.stderr).toBe(0);
    expect(proto.stdout.trim()).toContain('SyncFlags');
  }, 60_000);
});
