import { describe, expect, it } from 'vitest';
import { monitoringBinaries } from '../service/test-support/monitoring.js';
import { replayRollback } from './rollback-replay.js';
import { judge, rollbackScenarios } from './rollback-scenarios.js';

/*
 * The short form of `npm run measure:rollback`: every scenario at the shipped settings (15 s scrapes and
 * evaluations, the rules as committed, the rollback route's group_wait, the flag poll), with the healthy
 * heavy-tailed run cut from 72 h to 2 h. Fails when a scenario misses its aim.
 */
const hasPromtool = monitoringBinaries('promtool');

describe.skipIf(!hasPromtool)('time to rollback at the shipped settings (real service, promtool)', () => {
  it.each(rollbackScenarios({ healthyHours: 2 }).map((s) => [s.name, s] as const))(
    '%s',
    async (_, scenario) => {
      const result = await replayRollback(scenario);
      const verdict = judge(scenario.aim, result);
      console.log(`${scenario.name}: ${verdict.why}; alerts ${JSON.stringify(result.alerts)}`);
      expect(verdict, JSON.stringify(result)).toMatchObject({ met: true });
      if (scenario.aim.expect === 'rollback') {
        // The leg after Prometheus was run for real: the webhook changed the flag and ML stopped serving.
        expect(result.rollback?.webhook_to_heuristic_s).toBeGreaterThan(0);
      }
    },
    600_000,
  );
});
