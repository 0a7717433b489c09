import { writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { type AlertFiring, replayRollback, shippedSettings } from './rollback-replay.js';
import { judge, rollbackScenarios, timeOrderedScenarios } from './rollback-scenarios.js';

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
 * feed the rollback back: after it, its series are not the system's). Prints JSON (--markdown: the ADR's table instead, --json: the JSON into
 * FILE too); exit 1 when an aim is missed.
 */
const { values: args } = parseArgs({
  options: {
    hours: { type: 'string', default: '24' },
    'shuffled-hours': { type: 'string', default: '2' },
    only: { type: 'string' },
    shard: { type: 'string', default: '1/1' },
    seed: { type: 'string', default: '1' },
    markdown: { type: 'boolean', default: false },
    json: { type: 'string' },
  },
});

const started = performance.now();
const seed = Number(args.seed);
const shuffledHours = Number(args['shuffled-hours']);
const replayedMinutes = (s: { phases: { minutes: number }[] }) =>
  s.phases.reduce((sum, p) => sum + p.minutes, 0);
const all = [
  ...timeOrderedScenarios({ seed, healthyHours: Number(args.hours) }).map((s) => ({ ...s, order: 'time' })),
  ...(shuffledHours > 0
    ? rollbackScenarios({ healthyHours: shuffledHours }).map((s) => ({ ...s, order: 'shuffled' }))
    : []),
].filter((s) => !args.only || s.name.includes(String(args.only)));
const [shard, shards] = String(args.shard).split('/').map(Number) as [number, number];
if (!(Number.isInteger(shards) && shards >= 1 && Number.isInteger(shard) && shard >= 1 && shard <= shards)) {
  console.error(`--shard must be K/N with 1 <= K <= N, not ${args.shard}`);
  process.exit(2);
}
// Longest first, each to the least loaded share: shares of about the same replayed minutes.
const load = Array.from({ length: shards }, () => 0);
const mine = new Set<string>();
for (const s of [...all].sort(
  (a, b) => replayedMinutes(b) - replayedMinutes(a) || a.name.localeCompare(b.name),
)) {
  const least = load.indexOf(Math.min(...load));
  load[least] = (load[least] as number) + replayedMinutes(s);
  if (least === shard - 1) mine.add(s.name);
}
const scenarios = all.filter((s) => mine.has(s.name));
/** The severities that tell a person (the rest, `info`, is recorded only). */
const TOLD = ['page', 'ticket'] as const;
const told = (alerts: AlertFiring[]) =>
  Object.fromEntries(
    TOLD.map((severity) => [
      severity,
      alerts.filter((a) => a.severity === severity && a.notified).map((a) => a.alertname),
    ]),
  ) as Record<(typeof TOLD)[number], string[]>;
const results = [];
for (const scenario of scenarios) {
  const result = await replayRollback(scenario, { seed });
  const verdict = judge(scenario.aim, result);
  const stopped = result.rollback?.to_heuristic_s ?? Number.POSITIVE_INFINITY;
  const replayed = result.alerts.filter((a) => a.after_s <= stopped);
  const listing = {
    told: told(replayed),
    inhibited: replayed.filter((a) => !a.notified).map((a) => a.alertname),
    after_rollback: result.alerts.filter((a) => a.after_s > stopped).map((a) => a.alertname),
  };
  results.push({ ...result, ...listing, order: scenario.order, aim: scenario.aim, ...verdict });
  process.stderr.write(
    `${verdict.met ? 'met ' : 'MISSED'} ${scenario.name}: ${verdict.why}; pages ${listing.told.page.join(', ') || 'none'}; tickets ${listing.told.ticket.join(', ') || 'none'} (${result.elapsed_s} s)\n`,
  );
}
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
    const aim = r.aim.expect === 'rollback' ? `<= ${r.aim.within_s} s` : 'no rollback';
    const fired = r.rollback ? `${r.rollback.alertname} (${r.rollback.signal})` : 'none';
    console.log(
      `| ${r.order} | ${r.scenario} | ${fired} | ${r.rollback ? `${r.rollback.alert_s} s` : '-'} | ${r.rollback ? `${r.rollback.to_heuristic_s} s` : '-'} | ${names(r.told.page)} | ${names(r.told.ticket)} | ${names([...r.inhibited.map((a) => `${a} (inhibited)`), ...r.after_rollback.map((a) => `${a} (after ML stopped)`)])} | ${aim} | ${r.met ? 'yes' : `**no**: ${r.why}`} |`,
    );
  }
} else console.log(JSON.stringify(report, null, 2));
process.exit(report.all_met ? 0 : 1);
