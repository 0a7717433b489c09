import { isMainThread, parentPort, workerData } from 'node:worker_threads';
import { uniformFloat64 } from 'pure-rand/distribution/uniformFloat64';
import { xoroshiro128plus } from 'pure-rand/generator/xoroshiro128plus';
import type { PairedComparison } from './report-schemas.js';

/*
 * The paired comparison of ML and the heuristic's shadow (ADR 0004), and the worker thread that runs its
 * bootstrap off the event loop that answers predictions (reports.ts starts it on this file). The worker loads this
 * file as it is, .ts included (Node strips the types): it imports packages and types only.
 */

export const MIN_PAIRS = 30;
/**
 * Up to this many pairs the interval is a percentile bootstrap: 1,000 resamples of 20,000 pairs take about 120 ms of
 * the worker. Beyond it the normal interval of the mean, from sums the database keeps, agrees with the bootstrap
 * to within its own resampling noise (docs/adr/0011-report-rollups.md), and the bootstrap would take seconds.
 */
export const BOOTSTRAP_MAX_PAIRS = 20_000;
export const BOOTSTRAP_RESAMPLES = 1000;

const round4 = (x: number) => Math.round(x * 10_000) / 10_000;

/** The verdict on an interval, and the pairs needed while there is none. */
function judged(n: number, mean: number, sd: number, ci: [number, number]): PairedComparison {
  const known = n >= MIN_PAIRS && (ci[1] < 0 || ci[0] > 0);
  // On the difference as reported: float noise around 0 (1e-16) would ask for some 1e31 pairs.
  const reported = round4(mean);
  const needed =
    reported !== 0 ? Math.max(MIN_PAIRS, Math.ceil(((1.96 * sd) / Math.abs(reported)) ** 2)) : null;
  return {
    n,
    mean_difference: reported,
    ci95: ci,
    verdict: known ? (ci[1] < 0 ? 'ml_better' : 'ml_worse') : 'not_yet_known',
    pairs_needed: known ? null : needed,
  };
}

const NO_PAIRS: PairedComparison = {
  n: 0,
  mean_difference: null,
  ci95: null,
  verdict: 'not_yet_known',
  pairs_needed: MIN_PAIRS,
};

/** Percentile bootstrap of the mean difference, seeded so the same data gives the same interval. */
export function pairedComparison(
  diffs: ArrayLike<number>,
  resamples = BOOTSTRAP_RESAMPLES,
  seed = 1,
): PairedComparison {
  const n = diffs.length;
  if (n === 0) return NO_PAIRS;
  let total = 0;
  for (let i = 0; i < n; i++) total += diffs[i] as number;
  const mean = total / n;
  let squares = 0;
  for (let i = 0; i < n; i++) squares += ((diffs[i] as number) - mean) ** 2;
  const sd = Math.sqrt(squares / Math.max(n - 1, 1));
  const rng = xoroshiro128plus(seed);
  const means = new Float64Array(resamples);
  for (let b = 0; b < resamples; b++) {
    let sum = 0;
    for (let i = 0; i < n; i++) sum += diffs[Math.floor(uniformFloat64(rng) * n)] as number;
    means[b] = sum / n;
  }
  means.sort();
  return judged(n, mean, sd, [
    round4(means[Math.floor(0.025 * resamples)] as number),
    round4(means[Math.ceil(0.975 * resamples) - 1] as number),
  ]);
}

/**
 * The normal interval of the mean difference, mean ± 1.96 sd / √n, from the number of pairs, their mean and
 * the sum of squared deviations from it.
 */
export function pairedFromMoments(n: number, mean: number, squaredDeviations: number): PairedComparison {
  if (n === 0) return NO_PAIRS;
  const sd = Math.sqrt(Math.max(squaredDeviations, 0) / Math.max(n - 1, 1));
  const half = (1.96 * sd) / Math.sqrt(n);
  return judged(n, mean, sd, [round4(mean - half), round4(mean + half)]);
}

/** Marks the worker reports.ts starts; any other worker thread loading this module does nothing. */
export const BOOTSTRAP_WORKER = 'delay-paired-bootstrap';

/** A job: the differences as the database's comma-separated text, parsed here rather than on the event loop. */
export interface BootstrapJob {
  id: number;
  diffs: string;
}
export type BootstrapAnswer = { id: number; result: PairedComparison } | { id: number; error: string };

if (!isMainThread && workerData === BOOTSTRAP_WORKER) {
  parentPort?.on('message', ({ id, diffs }: BootstrapJob) => {
    try {
      const values = diffs === '' ? [] : diffs.split(',').map(Number);
      const bad = values.findIndex((v) => !Number.isFinite(v));
      if (bad >= 0) throw new Error(`paired difference ${bad} is not a number`);
      parentPort?.postMessage({ id, result: pairedComparison(values) } satisfies BootstrapAnswer);
    } catch (err) {
      parentPort?.postMessage({ id, error: (err as Error).message } satisfies BootstrapAnswer);
    }
  });
}
