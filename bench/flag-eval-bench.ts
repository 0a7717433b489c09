import { readFileSync } from 'node:fs';
import { PerformanceObserver } from 'node:perf_hooks';
import { FlagdCore } from '@openfeature/flagd-core';
import { FlagdProvider } from '@openfeature/flagd-provider';
import { OpenFeature } from '@openfeature/server-sdk';
import { microsPerUnit } from './timing.js';

/*
 * Cost of one delay-model evaluation at each layer: flagd-core's evaluator, the flagd provider, and the
 * OpenFeature client the service calls. Prints JSON: microseconds per evaluation (median of 5 runs) and
 * microseconds of garbage collection per evaluation (over the same runs).
 */
const file = process.argv[2] ?? 'flagd/flags.json';
const n = Number(process.env.BENCH_EVALUATIONS ?? 50_000);
const silent = { error() {}, warn() {}, info() {}, debug() {} };

const core = new FlagdCore(undefined, silent);
core.setConfigurations(readFileSync(file, 'utf8'));
const provider = new FlagdProvider({ resolverType: 'in-process', offlineFlagSourcePath: file }, silent);
await OpenFeature.setProviderAndWait('flag-eval-bench', provider);
const client = OpenFeature.getClient('flag-eval-bench');

/** Microseconds per evaluation (median of 5 runs after a warm-up), and of GC per evaluation over those runs. */
async function perEvaluation(evaluate: (key: string) => unknown) {
  const collections: { startTime: number; duration: number }[] = [];
  const gc = new PerformanceObserver((list) => collections.push(...list.getEntries()));
  gc.observe({ entryTypes: ['gc'] });
  let timedFrom = 0;
  const us = await microsPerUnit(n, async (run) => {
    if (run === 1) timedFrom = performance.now(); // run 0 warms up
    for (let i = 0; i < n; i++) await evaluate(`booking-${run}-${i}`);
  });
  // GC entries are delivered asynchronously: let the last ones arrive before summing.
  await new Promise((r) => setTimeout(r, 50));
  gc.disconnect();
  const gcMs = collections.filter((e) => e.startTime >= timedFrom).reduce((sum, e) => sum + e.duration, 0);
  return { us, gc_us: Math.round(((gcMs * 1000) / (5 * n)) * 100) / 100 };
}

const result = {
  evaluations_per_run: n,
  flagd_core: await perEvaluation((key) =>
    core.resolveStringEvaluation('delay-model', 'heuristic', { targetingKey: key }, silent),
  ),
  flagd_provider: await perEvaluation((key) =>
    provider.resolveStringEvaluation('delay-model', 'heuristic', { targetingKey: key }, silent),
  ),
  openfeature_client: await perEvaluation((key) =>
    client.getStringDetails('delay-model', 'heuristic', { targetingKey: key }),
  ),
};
await OpenFeature.close();
console.log(JSON.stringify(result, null, 2));
