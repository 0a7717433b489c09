import { readFileSync } from 'node:fs';
import { FlagdCore } from '@openfeature/flagd-core';
import { FlagdProvider } from '@openfeature/flagd-provider';
import { OpenFeature } from '@openfeature/server-sdk';

/*
 * Cost of one delay-model evaluation at each layer: flagd-core's evaluator, the flagd provider, and the
 * OpenFeature client the service calls. Prints JSON (microseconds per evaluation, median of 5 runs).
 */
const file = process.argv[2] ?? 'flagd/flags.json';
const n = Number(process.env.BENCH_EVALUATIONS ?? 50_000);
const silent = { error() {}, warn() {}, info() {}, debug() {} };

const core = new FlagdCore(undefined, silent);
core.setConfigurations(readFileSync(file, 'utf8'));
const provider = new FlagdProvider({ resolverType: 'in-process', offlineFlagSourcePath: file }, silent);
await OpenFeature.setProviderAndWait('flag-eval-bench', provider);
const client = OpenFeature.getClient('flag-eval-bench');

async function microsPerEvaluation(evaluate: (key: string) => unknown): Promise<number> {
  const runs: number[] = [];
  for (let run = 0; run < 6; run++) {
    const start = performance.now();
    for (let i = 0; i < n; i++) await evaluate(`booking-${run}-${i}`);
    if (run > 0) runs.push(((performance.now() - start) * 1000) / n); // run 0 warms up
  }
  runs.sort((a, b) => a - b);
  return Math.round((runs[2] as number) * 100) / 100;
}

const result = {
  evaluations_per_run: n,
  flagd_core_us: await microsPerEvaluation((key) =>
    core.resolveStringEvaluation('delay-model', 'heuristic', { targetingKey: key }, silent),
  ),
  flagd_provider_us: await microsPerEvaluation((key) =>
    provider.resolveStringEvaluation('delay-model', 'heuristic', { targetingKey: key }, silent),
  ),
  openfeature_client_us: await microsPerEvaluation((key) =>
    client.getStringDetails('delay-model', 'heuristic', { targetingKey: key }),
  ),
};
await OpenFeature.close();
console.log(JSON.stringify(result, null, 2));
