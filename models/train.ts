import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { runTrainer } from '../service/retraining/trainer-process.js';
import { datasetCsv } from './dataset.js';
import { generateBookings } from './generator.js';

/*
 * npm run train -- [--train 50000] [--test 10000] [--seed 42] [--version gbt-v1] [--out models]
 *                  [--estimators 300] [--python /usr/bin/python3]
 * Generates bookings, builds the feature matrix with the service's feature code, then runs the trainer
 * (models/trainer.py), which fits, exports ONNX, evaluates and writes the model card.
 */
const { values: args } = parseArgs({
  options: {
    train: { type: 'string', default: '50000' },
    test: { type: 'string', default: '10000' },
    seed: { type: 'string', default: '42' },
    version: { type: 'string', default: 'gbt-v1' },
    out: { type: 'string', default: 'models' },
    estimators: { type: 'string', default: '300' },
    python: { type: 'string' },
  },
});

const seed = Number(args.seed);
const work = mkdtempSync(join(tmpdir(), 'delay-train-'));
const outDir = resolve(args.out);
mkdirSync(outDir, { recursive: true });

const started = performance.now();
const train = datasetCsv(generateBookings({ seed, count: Number(args.train) }));
const test = datasetCsv(generateBookings({ seed: seed + 1, count: Number(args.test) }));
writeFileSync(join(work, 'train.csv'), train.csv);
writeFileSync(join(work, 'test.csv'), test.csv);
console.error(
  `data: ${args.train} train / ${args.test} test rows, seed ${seed}, in ${Math.round(performance.now() - started)} ms`,
);

try {
  const trainer = runTrainer({
    work,
    version: String(args.version),
    outDir,
    dataHash: train.sha256,
    seed,
    estimators: Number(args.estimators),
    ...(args.python ? { python: args.python } : {}),
  });
  process.exit(trainer.status);
} catch (err) {
  console.error((err as Error).message);
  process.exit(1);
}
