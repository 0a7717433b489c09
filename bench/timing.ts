import { median } from './load.js';

/**
 * Microseconds per unit of work: `work(run)` does `units` of it. Median of 5 timed runs after a warm-up run
 * (run 0).
 */
export async function microsPerUnit(units: number, work: (run: number) => Promise<unknown>) {
  const runs: number[] = [];
  for (let run = 0; run < 6; run++) {
    const start = performance.now();
    await work(run);
    if (run > 0) runs.push(((performance.now() - start) * 1000) / units);
  }
  return Math.round(median(runs) * 100) / 100;
}
