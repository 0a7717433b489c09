import { writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { replayRollback, shippedSettings } from './rollback-replay.js';
import { judge, rollbackScenarios } from './rollback-scenarios.js';

/*
 * npm run measure:rollback -- [--hours 72] [--only SUBSTRING] [--seed 1] [--markdown] [--json FILE]
 * Time to rollback at the shipped settings: each scenario of prometheus/rollback-scenarios.ts through the
 * real service, Prometheus' rule engine (promtool, prometheus/rules as committed, 15 s scrapes and
 * evaluations), the rollback route's group_wait and the flag poll, to the first all-heuristic prediction.
 * Prints JSON (--markdown: the README's table instead, --json: the JSON into FILE too); exit 1 when an aim
 * is missed.
 */
const { values: args } = parseArgs({
  options: {
    hours: { type: 'string', default: '72' },
    only: { type: 'string' },
    seed: { type: 'string', default: '1' },
    markdown: { type: 'boolean', default: false },
    json: { type: 'string' },
  },
});

const started = performance.now();
const scenarios = rollbackScenarios({ healthyHours: Number(args.hours) }).filter(
  (s) => !args.only || s.name.includes(String(args.only)),
);
const results = [];
for (const scenario of scenarios) {
  const result = await replayRollback(scenario, { seed: Number(args.seed) });
  const verdict = judge(scenario.aim, result);
  results.push({ ...result, aim: scenario.aim, ...verdict });
  process.stderr.write(
    `${verdict.met ? 'met ' : 'MISSED'} ${scenario.name}: ${verdict.why} (${result.elapsed_s} s)\n`,
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
  console.log('| scenario | first rollback alert (signal) | alert after | to all-heuristic | aim | met |');
  console.log('| --- | --- | --- | --- | --- | --- |');
  for (const r of results) {
    const aim = r.aim.expect === 'rollback' ? `<= ${r.aim.within_s} s` : 'no rollback';
    const fired = r.rollback ? `${r.rollback.alertname} (${r.rollback.signal})` : 'none';
    const others = r.alerts.filter((a) => !a.rollback && a.severity !== 'none').map((a) => a.alertname);
    console.log(
      `| ${r.scenario} | ${fired}${others.length ? `; pages/warnings: ${others.join(', ')}` : ''} | ${r.rollback ? `${r.rollback.alert_s} s` : '-'} | ${r.rollback ? `${r.rollback.to_heuristic_s} s` : '-'} | ${aim} | ${r.met ? 'yes' : `**no**: ${r.why}`} |`,
    );
  }
} else console.log(JSON.stringify(report, null, 2));
process.exit(report.all_met ? 0 : 1);
