import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { type DayInfo, daysThatMatter } from '../models/traffic.js';
import type { DriftBaseline } from '../service/domain/drift-baseline.js';
import { THRESHOLDS } from '../service/domain/rollback-policy.js';
import { type Scenario, type ScenarioResult, simulateDriftAlert } from './drift-alert-simulation.js';

/*
 * npm run measure:drift-alert -- [--hours 24] [--shuffled-hours 2] [--card models/gbt-v2.json] [--rate 10]
 *                                [--seed 1] [--shuffled-seed 1000]
 * Measures the DelayFeatureDrift alert as deployed (prometheus/rules, 15 s scrapes and evaluations) on
 * generator traffic, booking features judged against the same hours of the week in training. First in time
 * order (models/traffic.ts, --seed's days at a daily mean of --rate predictions/s): healthy days of --hours from
 * midnight (from 06:00 when shorter) — a wet winter weekday, a dry summer weekday, a dry weekend day — and
 * longer trips (x1.5) from 07:45 on the wet weekday after 40 minutes of history. Then shuffled traffic (random
 * days and hours of the year, --rate per second): --shuffled-hours undrifted (0 leaves them out) and shifts
 * after 30 minutes. Reports the share of 10-minute windows the alert fires in on healthy traffic, the highest
 * PSI it judged per feature, and the time from a shift to its first firing evaluation. Weather features are
 * judged against their month by the recording rules but not alerted on over 5 minutes: their PSIs are reported
 * apart. Prints JSON.
 */
const { values: args } = parseArgs({
  options: {
    hours: { type: 'string', default: '24' },
    'shuffled-hours': { type: 'string', default: '2' },
    card: { type: 'string', default: 'models/gbt-v2.json' },
    rate: { type: 'string', default: '10' },
    seed: { type: 'string', default: '1' },
    'shuffled-seed': { type: 'string', default: '1000' },
  },
});

const card = JSON.parse(readFileSync(String(args.card), 'utf8')) as { version: string; drift: DriftBaseline };
const baseline: DriftBaseline = { ...card.drift, model_version: card.version };
const hours = Number(args.hours);
const shuffledHours = Number(args['shuffled-hours']);
const trafficSeed = Number(args.seed);

const days = daysThatMatter(trafficSeed);
const healthyDays: { name: string; day: DayInfo }[] = [
  { name: 'wet winter weekday', day: days.wetWinterWeekday },
  { name: 'dry summer weekday', day: days.drySummerWeekday },
  { name: 'dry weekend day', day: days.dryWeekendDay },
];
const healthyFrom = hours >= 24 ? 0 : 6;
const HISTORY_MINUTES = 40;
const SHIFT_AT = 7.75;
const BEFORE_SHIFT_MINUTES = 30;
const AFTER_SHIFT_MINUTES = 30;
const clock = (hour: number) =>
  `${String(Math.floor(hour)).padStart(2, '0')}:${String(Math.round((hour % 1) * 60)).padStart(2, '0')}`;
const wetWeekday = healthyDays[0]?.day as DayInfo;

const timed: (Scenario & { kind: 'healthy' | 'shift'; day: DayInfo; shiftAfterMinutes?: number })[] = [
  ...healthyDays.map(({ name, day }) => ({
    kind: 'healthy' as const,
    day,
    name: `healthy ${name} ${day.date}, ${hours} h from ${clock(healthyFrom)}`,
    start: { day: day.date, hour: healthyFrom },
    phases: [{ minutes: hours * 60 }],
  })),
  {
    kind: 'shift',
    day: wetWeekday,
    name: `longer trips (x1.5) from ${clock(SHIFT_AT)}, wet winter weekday ${wetWeekday.date}`,
    start: { day: wetWeekday.date, hour: SHIFT_AT - HISTORY_MINUTES / 60 },
    shiftAfterMinutes: HISTORY_MINUTES,
    phases: [{ minutes: HISTORY_MINUTES }, { minutes: AFTER_SHIFT_MINUTES, season: { tripFactor: 1.5 } }],
  },
];
const shifted = (name: string, season: Scenario['phases'][number]['season']): Scenario => ({
  name,
  phases: [{ minutes: BEFORE_SHIFT_MINUTES }, { minutes: AFTER_SHIFT_MINUTES, season }],
});
const shuffled: Scenario[] =
  shuffledHours > 0
    ? [
        { name: 'undrifted', phases: [{ minutes: shuffledHours * 60 }] },
        shifted('heavier rain (x2)', { rainFactor: 2 }),
        shifted('rush hour 2 h later', { rushShiftHours: 2 }),
        shifted('longer trips (x1.5)', { tripFactor: 1.5 }),
      ]
    : [];

const started = performance.now();
const options = { baseline, predictionsPerSecond: Number(args.rate) };
const timedResults = await simulateDriftAlert({ ...options, trafficSeed, scenarios: timed });
const shuffledResults =
  shuffled.length > 0
    ? await simulateDriftAlert({ ...options, seed: Number(args['shuffled-seed']), scenarios: shuffled })
    : [];

const maxOf = (psi: Record<string, number>) => {
  const values = Object.values(psi);
  return values.length > 0 ? Math.max(...values) : null;
};
const healthy = (r: ScenarioResult) => ({
  scenario: r.name,
  hours: r.minutes / 60,
  observations: r.observations,
  windows: r.windows,
  firing_windows: r.firingWindows,
  false_alarm_share: r.firingWindows / r.windows,
  max_booking_psi: maxOf(r.maxPsi),
  booking_psi: r.maxPsi,
  weather_psi_judged_not_alerted: r.weatherPsi,
});
const detection = (r: ScenarioResult, shiftAfterMinutes: number) => {
  const entries = Object.entries(r.firstFiring).sort((a, b) => a[1] - b[1]);
  const first = entries[0];
  return {
    scenario: r.name,
    observed_minutes_after_shift: AFTER_SHIFT_MINUTES,
    ...(first
      ? {
          seconds_to_alert: first[1] - shiftAfterMinutes * 60,
          first_feature: first[0],
          features: entries.map((e) => e[0]),
        }
      : { seconds_to_alert: null, first_feature: null, features: [] }),
    max_booking_psi: maxOf(r.maxPsi),
    booking_psi: r.maxPsi,
  };
};

console.log(
  JSON.stringify(
    {
      model: card.version,
      alert: {
        name: 'DelayFeatureDrift',
        psi_threshold: THRESHOLDS.psi.drift,
        for: THRESHOLDS.psi.driftFor,
        min_observations_5m: THRESHOLDS.psi.minObservations,
      },
      time_ordered: {
        traffic_seed: trafficSeed,
        mean_predictions_per_second: Number(args.rate),
        healthy: timedResults.flatMap((r, i) =>
          timed[i]?.kind === 'healthy'
            ? [{ day: timed[i]?.day, from: clock(healthyFrom), ...healthy(r) }]
            : [],
        ),
        shifts: timedResults.flatMap((r, i) => {
          const s = timed[i];
          return s?.kind === 'shift' ? [{ day: s.day, ...detection(r, s.shiftAfterMinutes ?? 0) }] : [];
        }),
      },
      shuffled:
        shuffledResults.length > 0
          ? {
              seed: Number(args['shuffled-seed']),
              predictions_per_second: Number(args.rate),
              undrifted: shuffledResults[0] && healthy(shuffledResults[0]),
              shifts: shuffledResults.slice(1).map((r) => detection(r, BEFORE_SHIFT_MINUTES)),
            }
          : null,
      elapsed_s: Math.round((performance.now() - started) / 1000),
    },
    null,
    2,
  ),
);
