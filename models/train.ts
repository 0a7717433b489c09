import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { checkSegments, SEGMENT_BAR } from '../service/retraining/segment-figures.js';
import { runTrainer } from '../service/retraining/trainer-process.js';
import { type CardBar, refusals } from './bar.js';
import { datasetCsv, trainingRows } from './dataset.js';
import { WORLDS, type WorldName } from './generator.js';
import { scoreHoldout } from './holdout.js';
import { withGeneratedMomentBaselines } from './moment-baselines.js';

/*
 * npm run train -- [--train 50000] [--test 10000] [--seed 42] [--version gbt-v2] [--out models]
 *                  [--estimators 300] [--world default|hard] [--holdout random|time] [--python /usr/bin/python3]
 * Generates bookings, builds the feature matrix with the service's feature code, runs the trainer
 * (models/trainer.py: fit, export ONNX, evaluate, card), then scores the holdout through the service's own
 * ONNX inference per segment (service/features/segments.ts). A model that misses the card's bar or the
 * segment bar is refused: exit 1, nothing written to --out (the refused files stay in the work folder named).
 * Exit 2: bad arguments, or the trainer failed.
 */
const { values: args } = parseArgs({
  options: {
    train: { type: 'string', default: '50000' },
    test: { type: 'string', default: '10000' },
    seed: { type: 'string', default: '42' },
    version: { type: 'string', default: 'gbt-v2' },
    out: { type: 'string', default: 'models' },
    estimators: { type: 'string', default: '300' },
    world: { type: 'string', default: 'default' },
    holdout: { type: 'string', default: 'random' },
    python: { type: 'string' },
  },
});

const fail = (message: string): never => {
  console.error(message);
  process.exit(2);
};
if (!(args.world in WORLDS)) fail(`--world must be one of ${Object.keys(WORLDS).join(', ')}`);
if (args.holdout !== 'random' && args.holdout !== 'time') fail('--holdout must be random or time');
const worldName = args.world as WorldName;
const seed = Number(args.seed);
const trainCount = Number(args.train);
const testCount = Number(args.test);
const work = mkdtempSync(join(tmpdir(), 'delay-train-'));
const outDir = resolve(args.out);
const version = String(args.version);

const started = performance.now();
const rows = trainingRows({
  seed,
  trainRows: trainCount,
  testRows: testCount,
  world: worldName,
  holdout: args.holdout as 'random' | 'time',
});
const train = datasetCsv(rows.train);
const test = datasetCsv(rows.test);
writeFileSync(join(work, 'train.csv'), train.csv);
writeFileSync(join(work, 'test.csv'), test.csv);
console.error(
  `data: ${trainCount} train / ${testCount} test rows, seed ${seed}, ${worldName} world, ${args.holdout} holdout, in ${Math.round(performance.now() - started)} ms`,
);

let status = 1;
try {
  const trainer = runTrainer({
    work,
    version,
    outDir: work,
    dataHash: train.sha256,
    seed,
    estimators: Number(args.estimators),
    stdio: 'pipe',
    ...(args.python ? { python: args.python } : {}),
  });
  process.stderr.write(trainer.stderr);
  status = trainer.status;
} catch (err) {
  fail((err as Error).message);
}
if (status !== 0) fail(`the trainer failed (exit ${status}); nothing written to ${outDir}`);

const cardPath = join(work, `${version}.json`);
const card = await withGeneratedMomentBaselines(JSON.parse(readFileSync(cardPath, 'utf8')), {
  dir: work,
  version,
  ...rows,
});
const scores = await scoreHoldout(work, version, rows.test);
const checks = checkSegments(scores.model);
card.training_data = { ...card.training_data, world: worldName, holdout: args.holdout };
card.segments = {
  reference_delay: "the generator's true median",
  bar: SEGMENT_BAR,
  model: scores.model,
  oracle: scores.oracle,
  checks,
};
writeFileSync(cardPath, `${JSON.stringify(card, null, 2)}\n`);

const refused = refusals(card.bar as CardBar, checks);
console.log(
  JSON.stringify(
    {
      version,
      holdout_metrics: card.holdout_metrics,
      bar: card.bar,
      segments: scores.model.segments,
      refused,
    },
    null,
    2,
  ),
);
if (refused.length > 0) {
  console.error(
    `train: ${version} is refused, it misses the bar:\n  ${refused.join('\n  ')}\nnothing written to ${outDir}; the refused model is in ${work}`,
  );
  process.exit(1);
}
mkdirSync(outDir, { recursive: true });
for (const file of [`${version}.onnx`, `${version}.json`, `${version}.parity.json`])
  copyFileSync(join(work, file), join(outDir, file));
