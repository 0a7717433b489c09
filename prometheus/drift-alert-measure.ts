import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import type { DriftBaseline } from '../service/domain/drift-baseline.js';
import { THRESHOLDS } from '../service/domain/rollback-policy.js';
import { type Scenario, simulateDriftAlert } from './drift-alert-simulation.js';

/*
 * npm run measure:drift-alert -- [--hours 72] [--card models/gbt-v1.json] [--rate 10] [--seed 1000]
 * Measures the DelayFeatureDrift alert as deployed (prometheus/rules, 15 s scrapes and evaluations) on
 * generator traffic: the share of 10-minute windows in which it fires on undrifted traffic, and the time from
 * a shift (heavier rain, a moved rush hour, longer trips) to the first firing evaluation. Prints JSON.
 */
const { values: args } = parseArgs({
  options: {
    hours: { type: 'string', default: '72' },
    card: { type: 'string', default: 'models/gbt-v1.json' },
    rate: { type: 'string', default: '10' },
    seed: { type: 'string', default: '1000' },
  },
});

const card = JSON.parse(readFileSync(String(args.card), 'utf8')) as { version: string; drift: DriftBaseline };
const baseline: DriftBaseline = { ...card.drift, model_version: card.version };
const BEFORE_SHIFT_MINUTES = 30;
const AFTER_SHIFT_MINUTES = 30;
const shifted = (name: string, season: Scenario['phases'][number]['season']): Scenario => ({
  name,
  phases: [{ minutes: BEFORE_SHIFT_MINUTES }, { minutes: AFTER_SHIFT_MINUTES, season }],
});

const started = performance.now();
const results = simulateDriftAlert({
  baseline,
  seed: Number(args.seed),
  predictionsPerSecond: Number(args.rate),
  scenarios: [
    { name: 'undrifted', phases: [{ minutes: Number(args.hours) * 60 }] },
    shifted('heavier rain (x2)', { rainFactor: 2 }),
    shifted('rush hour 2 h later', { rushShiftHours: 2 }),
    shifted('longer trips (x1.5)', { tripFactor: 1.5 }),
  ],
});

const [steady, ...shifts] = results;
const detection = (firstFiring: Record<string, number>) => {
  const entries = Object.entries(firstFiring).sort((a, b) => a[1] - b[1]);
  const first = entries[0];
  return first
    ? {
        seconds_to_alert: first[1] - BEFORE_SHIFT_MINUTES * 60,
        first_feature: first[0],
        features: entries.map((e) => e[0]),
      }
    : { seconds_to_alert: null, first_feature: null, features: [] };
};
console.log(
  JSON.stringify(
    {
      model: card.version,
      predictions_per_second: Number(args.rate),
      undrifted: steady && {
        hours: steady.minutes / 60,
        windows: steady.windows,
        firing_windows: steady.firingWindows,
        false_alarm_share: steady.firingWindows / steady.windows,
        max_psi: Math.max(...Object.values(steady.maxPsi)),
        alert_threshold: THRESHOLDS.psi.drift,
      },
      shifts: shifts.map((s) => ({
        scenario: s.name,
        observed_minutes_after_shift: AFTER_SHIFT_MINUTES,
        ...detection(s.firstFiring),
        max_psi: Math.max(...Object.values(s.maxPsi)),
      })),
      elapsed_s: Math.round((performance.now() - started) / 1000),
    },
    null,
    2,
  ),
);
