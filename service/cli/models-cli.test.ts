import { execFile } from 'node:child_process';
import { copyFileSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { freshPostgres, postgresAvailable } from '../test-support/databases.js';
import { tempDir } from '../test-support/harness.js';

const hasPostgres = await postgresAvailable();
const database = hasPostgres ? await freshPostgres() : undefined;
afterAll(() => database?.close());

interface Run {
  status: number | null;
  stdout: string;
  stderr: string;
}
const models = (...args: string[]) =>
  new Promise<Run>((resolve) => {
    execFile(
      process.execPath,
      ['--import', 'tsx', 'service/cli/models-cli.ts', ...args],
      { encoding: 'utf8', env: { PATH: process.env.PATH ?? '', DATABASE_URL: database?.url ?? '' } },
      (err, stdout, stderr) =>
        resolve({ status: err ? (typeof err.code === 'number' ? err.code : null) : 0, stdout, stderr }),
    );
  });

describe.skipIf(!hasPostgres)('npm run models', () => {
  it('answers bad usage with the usage and exit 2', async () => {
    const usageErrors = [
      ['launch'],
      ['push'],
      ['show'],
      ['list', '--dir', 'models'],
      ['push', 'gbt-v2', '--force'],
    ];
    const refused = await Promise.all(usageErrors.map((args) => models(...args)));
    refused.forEach((run, i) => {
      expect(run.status, usageErrors[i]?.join(' ')).toBe(2);
      expect(run.stderr, usageErrors[i]?.join(' ')).toContain('usage: npm run models --');
    });
  });

  it('registers from MODELS_DIR, lists and shows; refuses with one line and exit 1', async () => {
    const pushed = await models('push', 'gbt-v2', '--json');
    expect(pushed.status, pushed.stderr).toBe(0);
    const { digest } = JSON.parse(pushed.stdout) as { digest: string };
    // gbt-v2's files under the retired name.
    const old = tempDir();
    copyFileSync('models/gbt-v2.onnx', join(old, 'gbt-v1.onnx'));
    const card = JSON.parse(readFileSync('models/gbt-v2.json', 'utf8'));
    writeFileSync(
      join(old, 'gbt-v1.json'),
      JSON.stringify({ ...card, version: 'gbt-v1', onnx: { ...card.onnx, file: 'gbt-v1.onnx' } }),
    );
    const [again, shown, listed, missing, unknown, retired] = await Promise.all([
      models('push', 'gbt-v2'),
      models('show', 'gbt-v2'),
      models('list'),
      models('push', 'gbt-v9', '--dir', tempDir()),
      models('show', 'gbt-v9'),
      models('push', 'gbt-v1', '--dir', old),
    ]);
    expect(again).toMatchObject({
      status: 0,
      stdout: `gbt-v2 is already registered with this artifact: ${digest}\n`,
    });
    expect(shown.status).toBe(0);
    expect(JSON.parse(shown.stdout)).toMatchObject({
      version: 'gbt-v2',
      digest,
      card: { version: 'gbt-v2' },
    });
    expect(listed.stdout).toMatch(/^gbt-v1 +retired: served three different artifacts/m);
    expect(listed.stdout).toMatch(new RegExp(`^gbt-v2 +${digest} 14 features, \\d+ bytes`, 'm'));
    for (const run of [missing, unknown, retired]) {
      expect(run.status).toBe(1);
      expect(run.stderr.trim().split('\n')).toHaveLength(1);
    }
    expect(missing.stderr).toMatch(/^gbt-v9: cannot read .*gbt-v9\.json/);
    expect(unknown.stderr).toContain('no model "gbt-v9" the service can load: it is not registered');
    expect(retired.stderr).toContain('the name is retired');
  });
});
