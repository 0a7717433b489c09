import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { datasetCsv, trainingRows } from './dataset.js';
import type { WorldName } from './generator.js';
import { withGeneratedMomentBaselines } from './moment-baselines.js';

/*
 * npm run baselines -- [--version gbt-v2] [--dir models]
 * Writes a committed model's moment baselines into its card (models/moment-baselines.ts) without training it
 * again: the card's own training data is generated anew from its seed, counts, world and holdout, and refused
 * unless its hash is the card's. `npm run train` writes the same baselines for every new model.
 * Exit 1: the data is not the card's; 2: bad arguments.
 */
const { values: args } = parseArgs({
  options: { version: { type: 'string', default: 'gbt-v2' }, dir: { type: 'string', default: 'models' } },
});
const dir = resolve(String(args.dir));
const cardPath = join(dir, `${args.version}.json`);
let card: {
  training_data: {
    generator_seed: number;
    train_rows: number;
    test_rows: number;
    sha256: string;
    world?: WorldName;
    holdout?: 'random' | 'time';
  };
  onnx: { file: string };
  drift: { features: { name: string; bin_edges: number[]; baseline_ratios: number[] }[] };
} & Record<string, unknown>;
try {
  card = JSON.parse(readFileSync(cardPath, 'utf8'));
} catch (err) {
  console.error(`baselines: cannot read ${cardPath}: ${(err as Error).message}`);
  process.exit(2);
}
const data = card.training_data;
const rows = trainingRows({
  seed: data.generator_seed,
  trainRows: data.train_rows,
  testRows: data.test_rows,
  world: data.world ?? 'default',
  holdout: data.holdout ?? 'random',
});
const hash = datasetCsv(rows.train).sha256;
if (hash !== data.sha256) {
  console.error(`baselines: the generated training data hashes to ${hash}, the card says ${data.sha256}`);
  process.exit(1);
}
// The model is loaded from a copy of the card without its old baseline: one fitted on another basis is refused.
const { shadow_baseline: _, ...unjudged } = card;
const work = mkdtempSync(join(tmpdir(), 'delay-baselines-'));
writeFileSync(join(work, `${args.version}.json`), JSON.stringify(unjudged));
copyFileSync(join(dir, card.onnx.file), join(work, card.onnx.file));
const updated = await withGeneratedMomentBaselines(card, {
  dir: work,
  version: String(args.version),
  ...rows,
});
rmSync(work, { recursive: true, force: true });
writeFileSync(cardPath, `${JSON.stringify(updated, null, 2)}\n`);
console.log(
  JSON.stringify({
    version: args.version,
    shadow_baseline: { ...updated.shadow_baseline, coefficients: undefined },
  }),
);
