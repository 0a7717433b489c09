import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parse, stringify } from 'yaml';
import { RULE_FILES as RULE_FILE_PATHS } from './rule-conventions.js';

/**
 * Prometheus' rule engine without a server: promtool's unit-test runner evaluates prometheus/rules/*.yml over
 * input series at a given evaluation interval. The replays (drift, rollback) write their series as a test,
 * ask questions as `promql_expr_test` queries expected empty, and read what promtool says it got instead.
 */
export interface Sample {
  labels: Record<string, string>;
  value: number;
}

export interface PromtoolTest {
  name: string;
  interval: string;
  input_series: { series: string; values: string }[];
  promql_expr_test: { expr: string; eval_time: string; exp_samples: [] }[];
}

export const RULE_FILES = RULE_FILE_PATHS.map((f) => resolve(f));

/** A query tagged with `query` and `scenario` labels, expected empty so promtool prints what it got. */
export const taggedQuery = (scenario: string, kind: string, expr: string, atMinutes: number) => ({
  expr: `label_replace(label_replace(${expr}, "scenario", "${scenario}", "", ""), "query", "${kind}", "", "")`,
  eval_time: `${atMinutes}m`,
  exp_samples: [] as [],
});

/**
 * promtool prints each failed expression test as `expr: "…", time: …` then `got: {labels} value, …`, or
 * `err: …` when the query failed.
 */
function parseGot(output: string): Sample[] {
  const errors = [...output.matchAll(/, err: (.*)/g)].map((m) => m[1]);
  if (errors.length > 0) throw new Error(`promtool could not evaluate a query: ${errors.join('; ')}`);
  return [...output.matchAll(/got: (.*)/g)].flatMap((line) =>
    [...(line[1] ?? '').matchAll(/\{([^}]*)\} (\S+?)(?:,|$)/g)].map((m) => ({
      labels: Object.fromEntries(
        [...(m[1] ?? '').matchAll(/(\w+)="([^"]*)"/g)].map((l) => [l[1] as string, l[2] as string]),
      ),
      value: Number(m[2]),
    })),
  );
}

/** Runs promtool without blocking the event loop; its exit code is not an error (failed tests print what they got). */
function runPromtool(promtool: string, args: string[]) {
  return new Promise<{ error: Error | null; output: string }>((resolve) => {
    execFile(promtool, args, { encoding: 'utf8', maxBuffer: 256 * 1024 * 1024 }, (err, stdout, stderr) =>
      resolve({
        error: err && typeof (err as { code?: unknown }).code !== 'number' ? err : null,
        output: `${stdout}${stderr}`,
      }),
    );
  });
}

export async function evaluateRules(
  tests: PromtoolTest[],
  { evaluationInterval, promtool = 'promtool' }: { evaluationInterval: string; promtool?: string },
): Promise<Sample[]> {
  const work = mkdtempSync(join(tmpdir(), 'promtool-eval-'));
  try {
    const file = join(work, 'replay.test.yml');
    writeFileSync(
      file,
      stringify(
        {
          rule_files: RULE_FILES,
          evaluation_interval: evaluationInterval,
          // Recording groups first, as a steady Prometheus sees them: otherwise promtool picks an order per run
          // and an alert reads this step's recorded value or the previous step's.
          group_eval_order: RULE_FILES.flatMap((f) =>
            (parse(readFileSync(f, 'utf8')) as { groups: { name: string }[] }).groups.map((g) => g.name),
          ),
          tests,
        },
        { lineWidth: 0 },
      ),
    );
    const run = await runPromtool(promtool, ['test', 'rules', file]);
    if (run.error) throw new Error(`cannot run ${promtool}: ${run.error.message} (apt install prometheus)`);
    const { output } = run;
    if (!output.includes('Unit Testing:'))
      throw new Error(`promtool did not run the rules:\n${output.slice(0, 2000)}`);
    return parseGot(output);
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}
