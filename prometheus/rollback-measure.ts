import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { type AlertFiring, replayRollback, shippedSettings } from './rollback-replay.js';
import { aimText, judge, MEASURE_DEFAULTS, measuredScenarios } from './rollback-scenarios.js';

/*
 * npm run measure:rollback -- [--hours 24] [--shuffled-hours 2] [--only SUBSTRING] [--shard K/N] [--seed 1]
 *                             [--markdown] [--json FILE]
 * Time to rollback at the shipped settings: each scenario through the real service, Prometheus' rule engine
 * (promtool, prometheus/rules as committed, 15 s scrapes and evaluations), the rollback route's group_wait and
 * the flag poll, to the first all-heuristic prediction. First the time-ordered scenarios
 * (prometheus/rollback-scenarios.ts: healthy days of --hours from midnight, or from 06:00 when shorter; breaks at
 * the morning rush and at night), then the shuffled ones (a year drawn at random; their healthy heavy-tailed run
 * lasts --shuffled-hours, 0 leaves the shuffled scenarios out). --shard K/N runs the K-th of N shares of similar
 * replayed minutes, so that N processes share the cores (.ci/run runs two). Beside the times, who is told: the
 * alerts that fired, by their `severity` label in prometheus/rules (page, ticket), left out when Alertmanager's
 * inhibition holds them back all along, or that fire only after ML stopped serving (the replayed traffic does not
 * feed the rollback back: after it, its series are not the system's). Prints JSON (--markdown: docs/rollout-and-rollback.md's table instead, --json: the JSON into
 * FILE too); exit 1 when an aim is missed.
 *
 * Each scenario runs in a process of its own (`--scenario NAME --result FILE`, the same command). Node 24's V8
 * can abort on its own when WebAssembly code is freed (nodejs/node#64500: `Check failed:
 * jit_page_->allocations_.erase(addr) == 1`, seen here after hours of in-process PGlite): a scenario whose process
 * the runtime killed is run once more, and said so; killed twice, it counts as missed.
 */
const { values: args } = parseArgs({
  options: {
    hours: { type: 'string', default: String(MEASURE_DEFAULTS.hours) },
    'shuffled-hours': { type: 'string', default: String(MEASURE_DEFAULTS.shuffledHours) },
    only: { type: 'string' },
    shard: { type: 'string', default: '1/1' },
    seed: { type: 'string', default: String(MEASURE_DEFAULTS.seed) },
    markdown: { type: 'boolean', default: false },
    json: { type: 'string' },
    scenario: { type: 'string' },
    result: { type: 'string' },
  },
});

const started = performance.now();
const seed = Number(args.seed);
const shuffledHours = Number(args['shuffled-hours']);
const replayedMinutes = (s: { phases: { minutes: number }[] }) =>
  s.phases.reduce((sum, p) => sum + p.minutes, 0);
const all = measuredScenarios({ hours: Number(args.hours), shuffledHours, seed });
type Scenario = (typeof all)[number];

/** The severities that tell a person (the rest, `info`, is recorded only). */
const TOLD = ['page', 'ticket'] as const;
const told = (alerts: AlertFiring[]) =>
  Object.fromEntries(
    TOLD.map((severity) => [
      severity,
      alerts.filter((a) => a.severity === severity && a.notified).map((a) => a.alertname),
    ]),
  ) as Record<(typeof TOLD)[number], string[]>;

async function measure(scenario: Scenario) {
  const result = await replayRollback(scenario, { seed });
  const verdict = judge(scenario.aim, result);
  const stopped = result.rollback?.to_heuristic_s ?? Number.POSITIVE_INFINITY;
  const replayed = result.alerts.filter((a) => a.after_s <= stopped);
  const listing = {
    told: told(replayed),
    inhibited: replayed.filter((a) => !a.notified).map((a) => a.alertname),
    after_rollback: result.alerts.filter((a) => a.after_s > stopped).map((a) => a.alertname),
  };
  return { ...result, ...listing, order: scenario.order, aim: scenario.aim, ...verdict, runtime_crashes: 0 };
}
type Measured = Awaited<ReturnType<typeof measure>>;

if (args.scenario !== undefined) {
  const scenario = all.find((s) => s.name === args.scenario);
  if (!scenario || !args.result) {
    console.error(
      `--scenario takes the exact name of a scenario, with --result FILE; no scenario "${args.scenario}"`,
    );
    process.exit(2);
  }
  writeFileSync(args.result, JSON.stringify(await measure(scenario)));
  process.exit(0);
}

const [shard, shards] = String(args.shard).split('/').map(Number) as [number, number];
if (!(Number.isInteger(shards) && shards >= 1 && Number.isInteger(shard) && shard >= 1 && shard <= shards)) {
  console.error(`--shard must be K/N with 1 <= K <= N, not ${args.shard}`);
  process.exit(2);
}
const chosen = all.filter((s) => !args.only || s.name.includes(String(args.only)));
// Longest first, each to the least loaded share: shares of about the same replayed minutes.
const load = Array.from({ length: shards }, () => 0);
const mine = new Set<string>();
for (const s of [...chosen].sort(
  (a, b) => replayedMinutes(b) - replayedMinutes(a) || a.name.localeCompare(b.name),
)) {
  const least = load.indexOf(Math.min(...load));
  load[least] = (load[least] as number) + replayedMinutes(s);
  if (least === shard - 1) mine.add(s.name);
}
const scenarios = chosen.filter((s) => mine.has(s.name));

const workDir = mkdtempSync(join(tmpdir(), 'rollback-measure-'));
/** Runs one scenario in a child process: its result, or how the runtime ended it. */
function runAlone(scenario: Scenario): Measured | { crashed: string } {
  const resultFile = join(workDir, 'result.json');
  rmSync(resultFile, { force: true });
  const child = spawnSync(
    process.execPath,
    [
      ...process.execArgv,
      process.argv[1] as string,
      ...['--scenario', scenario.name, '--result', resultFile],
      ...[
        '--hours',
        String(args.hours),
        '--shuffled-hours',
        String(args['shuffled-hours']),
        '--seed',
        String(seed),
      ],
    ],
    { stdio: ['ignore', 'inherit', 'inherit'] },
  );
  if (child.status === 0) return JSON.parse(readFileSync(resultFile, 'utf8')) as Measured;
  if (child.error) throw child.error;
  return { crashed: child.signal ? `killed by ${child.signal}` : `exit code ${child.status}` };
}

/** What is reported of a scenario the runtime killed twice: no measurement, a miss. */
const crashedTwice = (scenario: Scenario, first: string, second: string) => ({
  scenario: scenario.name,
  order: scenario.order,
  aim: scenario.aim,
  rollback: null,
  told: { page: [], ticket: [] },
  inhibited: [],
  after_rollback: [],
  met: false,
  why: `its process ended twice without a result (${first}, then ${second})`,
  elapsed_s: 0,
  runtime_crashes: 2,
});

const results: (Measured | ReturnType<typeof crashedTwice>)[] = [];
for (const scenario of scenarios) {
  const first = runAlone(scenario);
  let outcome: (typeof results)[number];
  if ('crashed' in first) {
    process.stderr.write(`RERUN ${scenario.name}: its process ended without a result (${first.crashed})\n`);
    const again = runAlone(scenario);
    outcome =
      'crashed' in again
        ? crashedTwice(scenario, first.crashed, again.crashed)
        : { ...again, runtime_crashes: 1 };
  } else outcome = first;
  results.push(outcome);
  process.stderr.write(
    `${outcome.met ? 'met ' : 'MISSED'} ${scenario.name}: ${outcome.why}; pages ${outcome.told.page.join(', ') || 'none'}; tickets ${outcome.told.ticket.join(', ') || 'none'} (${outcome.elapsed_s} s)\n`,
  );
}
rmSync(workDir, { recursive: true, force: true });
const report = {
  settings: shippedSettings(),
  scenarios: results,
  all_met: results.every((r) => r.met),
  elapsed_s: Math.round((performance.now() - started) / 1000),
};
if (args.json) writeFileSync(args.json, `${JSON.stringify(report, null, 2)}\n`);
if (args.markdown) {
  console.log(
    '| traffic | scenario | first rollback alert (signal) | alert after | to all-heuristic | pages | tickets | left out | aim | met |',
  );
  console.log('| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |');
  const names = (list: string[]) => list.join(', ') || 'none';
  for (const r of results) {
    const fired = r.rollback ? `${r.rollback.alertname} (${r.rollback.signal})` : 'none';
    console.log(
      `| ${r.order} | ${r.scenario} | ${fired} | ${r.rollback ? `${r.rollback.alert_s} s` : '-'} | ${r.rollback ? `${r.rollback.to_heuristic_s} s` : '-'} | ${names(r.told.page)} | ${names(r.told.ticket)} | ${names([...r.inhibited.map((a) => `${a} (inhibited)`), ...r.after_rollback.map((a) => `${a} (after ML stopped)`)])} | ${aimText(r.aim)} | ${r.met ? 'yes' : `**no**: ${r.why}`} |`,
    );
  }
} else console.log(JSON.stringify(report, null, 2));
process.exit(report.all_met ? 0 : 1);
