import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { daysOf, findDay } from '../models/traffic.js';
import type { DriftBaseline } from '../service/domain/drift-baseline.js';
import { THRESHOLDS } from '../service/domain/rollback-policy.js';
import { monitoringBinaries } from '../service/test-support/monitoring.js';
import { simulateDriftAlert } from './drift-alert-simulation.js';

const hasPromtool = monitoringBinaries('promtool');

const card = JSON.parse(readFileSync('models/gbt-v2.json', 'utf8')) as {
  version: string;
  drift: DriftBaseline;
};
const BOOKING_FEATURES = ['distance_km', 'driver_active_bookings', 'estimated_duration_min', 'priority_code'];
/**
 * The alert judges booking features only, each on its own series: the weather counters, half the rule engine's
 * work, are left out to keep the test short (npm run measure:drift-alert replays them too).
 */
const baseline = {
  model_version: card.version,
  features: card.drift.features.filter((f) => BOOKING_FEATURES.includes(f.name)),
};

/** The alert's `for` in seconds (prometheus/rules.test.ts holds alerts.yml to it). */
const alertFor = (() => {
  const m = /^(\d+)([sm])$/.exec(THRESHOLDS.psi.driftFor);
  if (!m) throw new Error(`unsupported duration ${THRESHOLDS.psi.driftFor}`);
  return Number(m[1]) * (m[2] === 'm' ? 60 : 1);
})();

describe.skipIf(!hasPromtool)('the drift alert on generator traffic at 10 predictions/s (promtool)', () => {
  it('stays quiet through a wet winter morning rush and fires within 5 minutes + its `for` of longer trips', async () => {
    const wetThursday = findDay(daysOf({ seed: 1 }), { month: 1, weekdays: [4], wet: true });
    const history = 40;
    const [rush, trips, shuffled] = await simulateDriftAlert({
      baseline,
      trafficSeed: 1,
      seed: 77,
      scenarios: [
        { name: 'morning rush', start: { day: wetThursday.date, hour: 6 }, phases: [{ minutes: 240 }] },
        {
          name: 'longer trips at 07:45',
          start: { day: wetThursday.date, hour: 7.75 - history / 60 },
          phases: [{ minutes: history }, { minutes: 20, season: { tripFactor: 1.5 } }],
        },
        { name: 'shuffled, undrifted', phases: [{ minutes: 60 }] },
      ],
    });

    // 06:00-10:00, hours of the week judged against the same hours in training.
    expect(rush?.windows).toBe(24);
    expect(rush?.firingWindows).toBe(0);
    expect(rush?.firstFiring).toEqual({});
    expect(Object.keys(rush?.maxPsi ?? {}).sort()).toEqual(BOOKING_FEATURES);
    expect(Math.max(...Object.values(rush?.maxPsi ?? {}))).toBeLessThan(0.1);

    const shift = history * 60;
    const fired = Object.values(trips?.firstFiring ?? {});
    expect(Object.keys(trips?.firstFiring ?? {}).sort()).toEqual(['distance_km', 'estimated_duration_min']);
    expect(Math.min(...fired)).toBeGreaterThan(shift);
    expect(Math.min(...fired)).toBeLessThanOrEqual(shift + 300 + alertFor);

    expect(shuffled?.windows).toBe(6);
    expect(shuffled?.firingWindows).toBe(0);
    expect(Object.keys(shuffled?.maxPsi ?? {}).sort()).toEqual(BOOKING_FEATURES);
    expect(Math.max(...Object.values(shuffled?.maxPsi ?? {}))).toBeLessThan(0.1);
    // Five hours of 15 s evaluations through promtool: about 25 s on 2 cores.
  }, 90_000);
});
