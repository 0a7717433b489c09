import { describe, expect, it } from 'vitest';
import { monitoringBinaries } from '../service/test-support/monitoring.js';
import { replayRollback } from './rollback-replay.js';
import { judge, type MeasuredScenario, timeOrderedScenarios } from './rollback-scenarios.js';

/*
 * The short form of `npm run measure:rollback` at the shipped settings (15 s scrapes and evaluations, the rules as
 * committed, the rollback route's group_wait, the flag poll): traffic in time order over the morning rush of a wet
 * winter weekday (06:00-09:00) with no rollback and no page, breaks injected at the morning rush and at night, and
 * the storm. The whole set, with three healthy days of 24 h and the shuffled scenarios, is the command (.ci/run).
 */
const hasPromtool = monitoringBinaries('promtool');

const timeOrdered = timeOrderedScenarios({ healthyHours: 3 });
const pick = (scenarios: MeasuredScenario[], ...names: string[]) =>
  names.map((name) => {
    const found = scenarios.find((s) => s.name.startsWith(name));
    if (!found) throw new Error(`no scenario ${name}`);
    return found;
  });
const SHORT_FORM = pick(
  timeOrdered,
  'healthy wet',
  'new version 9 min too high, at morning rush',
  'new version 9 min too low, at night',
  'every ML booking falls back (model errors), at night',
  'severe feature drift: trips 3 times longer, at morning rush',
  'storm',
);

describe.skipIf(!hasPromtool)('time to rollback at the shipped settings (real service, promtool)', () => {
  it.each(SHORT_FORM.map((s) => [s.name, s] as const))(
    '%s',
    async (_, scenario) => {
      const result = await replayRollback(scenario);
      const verdict = judge(scenario.aim, result);
      console.log(
        `${scenario.name}: ${verdict.why}; alerts ${JSON.stringify(result.alerts)}; healthy peaks ${JSON.stringify(result.healthy_peaks)}`,
      );
      expect(verdict, JSON.stringify(result)).toMatchObject({ met: true });
      if (scenario.aim.expect === 'rollback') {
        // The leg after Prometheus was run for real: the webhook changed the flag and ML stopped serving.
        expect(result.rollback?.webhook_to_heuristic_s).toBeGreaterThan(0);
      }
    },
    600_000,
  );
});
