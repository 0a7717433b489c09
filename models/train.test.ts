import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { tempDir } from '../service/test-support/harness.js';
import { expectParity } from '../service/test-support/parity.js';

const python = '/usr/bin/python3';
const hasTrainer = spawnSync(python, ['-c', 'import sklearn, onnx'], { stdio: 'ignore' }).status === 0;
if (!hasTrainer && process.env.CI !== 'true') {
  console.warn(
    `skipping the training run: ${python} lacks scikit-learn or onnx (apt install python3-sklearn python3-onnx)`,
  );
}

function train(out: string) {
  const run = spawnSync(
    process.execPath,
    [
      '--import',
      'tsx',
      'models/train.ts',
      '--train',
      '3000',
      '--test',
      '1000',
      '--estimators',
      '40',
      '--out',
      out,
      '--version',
      'ci-small',
    ],
    { encoding: 'utf8' },
  );
  expect(run.status, run.stderr).toBe(0);
  return JSON.parse(run.stdout.slice(run.stdout.indexOf('{')));
}

describe.skipIf(!hasTrainer && process.env.CI !== 'true')('a small training run', () => {
  it('trains from nothing, twice to the same bytes, and Node serves what the trainer predicted', async () => {
    const a = tempDir();
    const b = tempDir();
    const report = train(a);
    train(b);
    for (const file of ['ci-small.onnx', 'ci-small.json', 'ci-small.parity.json']) {
      expect(readFileSync(join(a, file)).equals(readFileSync(join(b, file))), file).toBe(true);
    }
    expect(Object.keys(report.holdout_metrics)).toEqual([
      'model',
      'model_without_weather',
      'heuristic',
      'oracle',
    ]);
    const card = JSON.parse(readFileSync(join(a, 'ci-small.json'), 'utf8'));
    expect(card.training_data).toMatchObject({ train_rows: 3000, test_rows: 1000, generator_seed: 42 });
    expect(card.drift.features).toHaveLength(card.feature_schema.length);
    for (const f of card.drift.features) {
      expect(f.baseline_ratios).toHaveLength(f.bin_edges.length + 1);
      expect(f.baseline_ratios.reduce((s: number, r: number) => s + r, 0)).toBeCloseTo(1, 4);
    }
    await expectParity(a, 'ci-small');
  }, 120_000);
});
