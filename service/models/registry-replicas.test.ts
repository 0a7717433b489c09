import { execFile } from 'node:child_process';
import { copyFileSync, existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { modelVersions } from '../../db/schema.js';
import { freshPostgres, postgresAvailable } from '../test-support/databases.js';
import { booking, eventually, flagsDocument, tempDir, writeFlags } from '../test-support/harness.js';
import { type ServiceProcess, scrapeMetrics, startService, waitForReady } from '../test-support/process.js';
import { modelDigest } from './model-store.js';

/*
 * A version reaches every replica through the model registry: two service processes on one Postgres, each with a
 * MODELS_DIR holding gbt-v2 alone (as the image does), and a version pushed with the CLI from a folder of its own.
 */
const ready = await postgresAvailable();
const cleanups: (() => Promise<unknown> | unknown)[] = [];
afterAll(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

const CARD = JSON.parse(readFileSync('models/gbt-v2.json', 'utf8')) as Record<string, unknown> & {
  onnx: Record<string, unknown>;
};
const cardOf = (version: string, changes: Record<string, unknown> = {}) => ({
  ...CARD,
  version,
  onnx: { ...CARD.onnx, file: `${version}.onnx` },
  ...changes,
});

interface Run {
  status: number | null;
  stdout: string;
  stderr: string;
}
const models = (env: Record<string, string>, ...args: string[]) =>
  new Promise<Run>((resolve) => {
    execFile(
      process.execPath,
      ['--import', 'tsx', 'service/cli/models-cli.ts', ...args],
      { encoding: 'utf8', env: { PATH: process.env.PATH ?? '', ...env } },
      (err, stdout, stderr) =>
        resolve({ status: err ? (typeof err.code === 'number' ? err.code : null) : 0, stdout, stderr }),
    );
  });

/** The flag with gbt-v2 at 30%, and `canaries` at 10% each beside it. */
function flagsWith(...canaries: string[]) {
  const doc = flagsDocument({ mlWeight: 30 });
  const model = doc.flags['delay-model'] as { variants: Record<string, string>; targeting: unknown };
  for (const version of canaries) model.variants[version] = version;
  model.targeting = {
    fractional: [
      ['gbt-v2', 30],
      ...canaries.map((version) => [version, 10]),
      ['heuristic', 70 - 10 * canaries.length],
    ],
  };
  return doc;
}

describe.skipIf(!ready)('a model version pushed to the registry, on two replicas of one Postgres', () => {
  it('reaches both without a file or a restart; other bytes under its name are refused at push and at load', async () => {
    const database = await freshPostgres();
    cleanups.push(() => database.close());
    const dir = tempDir('delay-registry-replicas-');
    const flagsFile = join(dir, 'flags.json');
    writeFlags(flagsFile, flagsWith());
    // The replicas' models folder, as the image's: gbt-v2 alone.
    const imageModels = tempDir('delay-image-models-');
    for (const ext of ['onnx', 'json'])
      copyFileSync(`models/gbt-v2.${ext}`, join(imageModels, `gbt-v2.${ext}`));
    // Where retraining wrote gbt-v3: no replica reads this folder.
    const trained = tempDir('delay-trained-');
    copyFileSync('models/gbt-v2.onnx', join(trained, 'gbt-v3.onnx'));
    writeFileSync(join(trained, 'gbt-v3.json'), JSON.stringify(cardOf('gbt-v3')));
    const env = { DATABASE_URL: database.url };

    const start = () =>
      startService({
        ...env,
        FLAGS_FILE: flagsFile,
        FLAGS_POLL_INTERVAL_MS: '200',
        MODELS_DIR: imageModels,
      });
    const replicas = await Promise.all([start(), start()]);
    cleanups.push(() => Promise.all(replicas.map((r) => r.stop('SIGTERM'))));
    const [pushed] = await Promise.all([
      models(env, 'push', 'gbt-v3', '--dir', trained),
      // Two services and a CLI start at once: on a loaded 2-core machine, well over the default minute.
      ...replicas.map((r) => waitForReady(r, 120_000)),
    ]);
    const digest = modelDigest(new Uint8Array(readFileSync('models/gbt-v2.onnx')), cardOf('gbt-v3'));
    expect(pushed.status, pushed.stderr).toBe(0);
    expect(pushed.stdout.trim()).toBe(
      `gbt-v3 registered in the model registry (Postgres at DATABASE_URL): ${digest}`,
    );

    writeFlags(flagsFile, flagsWith('gbt-v3'));
    const status = (r: ServiceProcess) =>
      fetch(`http://127.0.0.1:${r.port}/v1/flags/status`).then(
        (res) =>
          res.json() as Promise<{ loaded_versions: { model_version: string; digest: string | null }[] }>,
      );
    for (const replica of replicas) {
      const loaded = await eventually(
        () => status(replica),
        (s) => s.loaded_versions.some((v) => v.model_version === 'gbt-v3'),
        20_000,
      );
      expect(loaded.loaded_versions).toContainEqual({ model_version: 'gbt-v3', digest });
      expect(
        (await scrapeMetrics(replica.metricsPort))('delay_models_loaded', { model_version: 'gbt-v3' }),
      ).toBe(1);
      const res = await fetch(`http://127.0.0.1:${replica.port}/v1/predictions/batch`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({
          bookings: Array.from({ length: 200 }, (_, i) =>
            booking({ booking_id: `reg-${replica.port}-${i}` }),
          ),
        }),
      });
      const { predictions } = (await res.json()) as {
        predictions: { variant: string; source: string; model_version: string | null }[];
      };
      const canary = predictions.filter((p) => p.variant === 'gbt-v3');
      expect(canary.length).toBeGreaterThan(0);
      expect(canary.filter((p) => p.source !== 'ml' || p.model_version !== 'gbt-v3')).toEqual([]);
    }
    expect(existsSync(join(imageModels, 'gbt-v3.onnx'))).toBe(false);

    // The same name with other bytes: refused, exit 1, one line naming both digests; gbt-v3 stays as it was.
    writeFileSync(join(trained, 'gbt-v3.json'), JSON.stringify(cardOf('gbt-v3', { expected_value: 0 })));
    const conflict = await models(env, 'push', 'gbt-v3', '--dir', trained);
    expect(conflict.status).toBe(1);
    expect(conflict.stderr).toMatch(
      new RegExp(
        `^gbt-v3 is registered with digest ${digest}; this artifact's is sha256:[0-9a-f]{64}: a version never changes, register it under a new name\\n$`,
      ),
    );

    // Other bytes planted in the table under a new name: no replica serves them.
    const graph = new Uint8Array(readFileSync('models/gbt-v2.onnx'));
    await database.db.insert(modelVersions).values({
      version: 'gbt-v4',
      digest: modelDigest(graph, cardOf('gbt-v4')),
      card: cardOf('gbt-v4', { expected_value: 0 }),
      onnx: graph,
      featureSchema: [],
      registeredBy: 'planted',
    });
    writeFlags(flagsFile, flagsWith('gbt-v3', 'gbt-v4'));
    for (const replica of replicas) {
      const metric = await eventually(
        () => scrapeMetrics(replica.metricsPort),
        (m) =>
          m('delay_models_load_errors_total', { model_version: 'gbt-v4', reason: 'digest_mismatch' }) >= 1,
        20_000,
      );
      expect(metric('delay_models_loaded', { model_version: 'gbt-v4' })).toBe(0);
      expect(metric('delay_models_loaded', { model_version: 'gbt-v3' })).toBe(1);
      expect((await status(replica)).loaded_versions.map((v) => v.model_version).sort()).toEqual([
        'gbt-v2',
        'gbt-v3',
      ]);
    }
    const listed = await models(env, 'list', '--json');
    expect(listed.status, listed.stderr).toBe(0);
    expect(
      (JSON.parse(listed.stdout) as { version: string; registeredBy: string }[]).map((v) => v.version).sort(),
    ).toEqual(['gbt-v1', 'gbt-v2', 'gbt-v3', 'gbt-v4']);
  }, 180_000);
});
