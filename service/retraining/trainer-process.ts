import { spawnSync } from 'node:child_process';
import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { FEATURE_SCHEMA, WEATHER_FEATURES } from '../features/booking-features.js';

export interface TrainerRun {
  /** A folder holding train.csv and test.csv (feature columns in FEATURE_SCHEMA order, then labels). */
  work: string;
  version: string;
  outDir: string;
  dataHash: string;
  seed: number;
  estimators: number;
  /** Where the rows come from, written in the card, when they are not the generator's. */
  dataSource?: string;
  python?: string;
  /** 'inherit' shows the trainer's report; 'pipe' keeps it for the caller. */
  stdio?: 'inherit' | 'pipe';
}

/** Debian's Python has python3-sklearn and python3-onnx; the first python3 on PATH may not. */
export const defaultPython = () => (existsSync('/usr/bin/python3') ? '/usr/bin/python3' : 'python3');

/** Beside the module, not the working folder: the checkout and the trainer image both hold models/ two levels up. */
const TRAINER = fileURLToPath(new URL('../../models/trainer.py', import.meta.url));

/** Runs models/trainer.py: fit, export ONNX, evaluate on test.csv, write the card and the parity fixture. */
export function runTrainer(run: TrainerRun) {
  const python = run.python ?? defaultPython();
  writeFileSync(
    join(run.work, 'schema.json'),
    JSON.stringify({ features: FEATURE_SCHEMA, weather_features: WEATHER_FEATURES }, null, 2),
  );
  const result = spawnSync(
    python,
    [
      TRAINER,
      ...['--train', join(run.work, 'train.csv'), '--test', join(run.work, 'test.csv')],
      ...['--schema', join(run.work, 'schema.json'), '--version', run.version, '--out-dir', run.outDir],
      ...['--data-hash', run.dataHash, '--seed', String(run.seed), '--estimators', String(run.estimators)],
      ...(run.dataSource ? ['--data-source', run.dataSource] : []),
    ],
    { stdio: run.stdio ?? 'inherit', encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 },
  );
  if (result.error) {
    throw new Error(
      `cannot run ${python}: ${result.error.message} (install python3-sklearn and python3-onnx)`,
    );
  }
  return { status: result.status ?? 1, stdout: result.stdout ?? '', stderr: result.stderr ?? '' };
}
