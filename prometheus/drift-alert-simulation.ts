import { generateBookings, type RawBooking, type Season } from '../models/generator.js';
import { generateTraffic, utcOfLocal } from '../models/traffic.js';
import type { DriftBaseline } from '../service/domain/drift-baseline.js';
import { THRESHOLDS } from '../service/domain/rollback-policy.js';
import { NEUTRAL_WEATHER } from '../service/domain/weather.js';
import { binOf, DRIFT_FEATURES, momentOf, sharesAt } from '../service/drift/drift-monitor.js';
import {
  bookingFeatures,
  FEATURE_NAMES,
  type FeatureName,
  featureVector,
  WEATHER_FEATURES,
} from '../service/features/booking-features.js';
import { evaluateRules, taggedQuery } from './promtool-eval.js';

/**
 * Replays generator traffic through the repository's drift rules with promtool: the service's counters
 * (`delay_features_observations_total` and `delay_features_expected_total`, counted with the drift monitor's own
 * bin rule and moments: each observation adds its hour of the week's training shares, its month's for weather)
 * are written as promtool input series at the production scrape interval, and Prometheus' rule engine evaluates
 * prometheus/rules/*.yml over them at the production evaluation interval. What is read back is the
 * `DelayFeatureDrift` alert's own ALERTS series, so the figures are those of the alert as deployed.
 *
 * Two kinds of traffic: time-ordered (a scenario with `start`: consecutive local hours of one seed's days at the
 * demand curve's rate, each with its hour's weather, models/traffic.ts), or shuffled (bookings from random days
 * and hours of the year, as many per scrape interval).
 */
export interface Phase {
  minutes: number;
  season?: Season;
}

export interface Scenario {
  name: string;
  /**
   * Time-ordered traffic from this local (Paris) moment, phases consecutive: each phase's bookings come from
   * generateTraffic with the simulation's `trafficSeed` (the same for every phase, so the weather runs on across
   * a shift unless the phase's season changes the rain), counted in the scrape interval of their
   * `requested_at_ms`. Absent: shuffled traffic.
   */
  start?: { day: string; hour: number };
  phases: Phase[];
}

export interface ScenarioResult {
  name: string;
  minutes: number;
  /** Bookings observed over the whole scenario. */
  observations: number;
  /** Aligned 10-minute windows, and those in which the alert was firing at any evaluation. */
  windows: number;
  firingWindows: number;
  /** Seconds from the start of the scenario to the first firing evaluation, per feature. */
  firstFiring: Record<string, number>;
  /**
   * The highest PSI the alert judged (windows with enough observations), per booking feature: the margin left.
   * A feature absent never had a window with enough observations.
   */
  maxPsi: Record<string, number>;
  /**
   * The same for the weather features, judged against their month by the recording rules but not alerted on
   * over 5 minutes (one hour of one day holds one weather; weather drift is `npm run drift -- check`'s).
   */
  weatherPsi: Record<string, number>;
}

export interface SimulationOptions {
  baseline: DriftBaseline;
  scenarios: Scenario[];
  /** Seed of shuffled traffic (each scenario and phase offset from it). */
  seed?: number;
  /** Seed of time-ordered traffic: the seed whose days (`daysOf`) the scenarios' `start` picked. */
  trafficSeed?: number;
  /** Shuffled: predictions per second; time-ordered: their daily mean (the demand curve sets each moment's). */
  predictionsPerSecond?: number;
  scrapeSeconds?: number;
  promtool?: string;
}

const ALERT = 'ALERTS{alertname="DelayFeatureDrift",alertstate="firing"}';
const WINDOW_MINUTES = 10;
/** The alert's guard: PSI is judged only on windows with this many observations. */
const MIN_OBSERVATIONS = THRESHOLDS.psi.minObservations;
const MINUTE_MS = 60_000;
const DAY_MS = 86_400_000;

const isWeather = (feature: string) => WEATHER_FEATURES.includes(feature as FeatureName);
const minutesOf = (scenario: Scenario) => scenario.phases.reduce((s, p) => s + p.minutes, 0);

/** Each phase's bookings, and the scrape interval of the phase (from its start) each falls in. */
function* phaseTraffic(
  options: SimulationOptions,
  scenario: Scenario,
  seedOffset: number,
): Generator<{ scrapes: number; rows: RawBooking[]; scrapeOf: (i: number) => number }> {
  const { seed = 1000, trafficSeed = 1, predictionsPerSecond = 10, scrapeSeconds = 15 } = options;
  let afterMinutes = 0;
  for (const [p, phase] of scenario.phases.entries()) {
    const scrapes = Math.round((phase.minutes * 60) / scrapeSeconds);
    const season = phase.season ?? {};
    if (scenario.start) {
      // The phase's window, in local time: consecutive with the previous phase's.
      const local =
        Date.parse(`${scenario.start.day}T00:00:00Z`) +
        Math.round((scenario.start.hour * 60 + afterMinutes) * MINUTE_MS);
      const day = new Date(local).toISOString().slice(0, 10);
      const hour = (local % DAY_MS) / 3_600_000;
      const startMs = utcOfLocal(day, hour);
      const rows = generateTraffic({
        seed: trafficSeed,
        startDay: day,
        startHour: hour,
        hours: phase.minutes / 60,
        perSecond: predictionsPerSecond,
        season,
      });
      yield {
        scrapes,
        rows,
        scrapeOf: (i) =>
          Math.min(
            scrapes - 1,
            Math.floor(((rows[i]?.requested_at_ms ?? startMs) - startMs) / (scrapeSeconds * 1000)),
          ),
      };
    } else {
      const perScrape = predictionsPerSecond * scrapeSeconds;
      const rows = generateBookings({
        seed: seed + 1000 * seedOffset + p,
        count: scrapes * perScrape,
        season,
      });
      yield { scrapes, rows, scrapeOf: (i) => Math.floor(i / perScrape) };
    }
    afterMinutes += phase.minutes;
  }
}

/**
 * The drift monitor's counters at every scrape (service/drift/drift-monitor.ts): per watched feature and bin, the
 * observations, and the expected counts (each observation adds its moment's shares, the year's for a moment the
 * card lacks). The weather is always measured here, so weather features count every booking.
 */
function counterSeries(options: SimulationOptions, scenario: Scenario, seedOffset: number) {
  const features = options.baseline.features
    .filter(
      (f) =>
        DRIFT_FEATURES.includes(f.name as FeatureName) && f.baseline_ratios.length === f.bin_edges.length + 1,
    )
    .map((f) => ({
      ...f,
      index: FEATURE_NAMES.indexOf(f.name as FeatureName),
      moments: f.moments ?? {},
      ratios: f.baseline_ratios,
      weather: isWeather(f.name),
      // Per bin: the counters now, and their values at each scrape from 0 at the start, as a fresh service's.
      bins: f.baseline_ratios.map(() => ({ observed: 0, expected: 0, observedAt: ['0'], expectedAt: ['0'] })),
    }));
  let observations = 0;
  const scrape = () => {
    for (const f of features) {
      for (const c of f.bins) {
        c.observedAt.push(String(c.observed));
        // Fractional counts; 4 decimals keep the shares exact far below sampling noise.
        c.expectedAt.push(String(Number(c.expected.toFixed(4))));
      }
    }
  };
  for (const { scrapes, rows, scrapeOf } of phaseTraffic(options, scenario, seedOffset)) {
    let s = 0;
    rows.forEach((row, r) => {
      for (const at = scrapeOf(r); s < at; s++) scrape();
      const vector = featureVector(bookingFeatures(row.booking, row.weather), NEUTRAL_WEATHER);
      const moment = momentOf(vector);
      observations += 1;
      for (const f of features) {
        const observed = f.bins[binOf(f.bin_edges, vector[f.index] as number)];
        if (observed) observed.observed += 1;
        sharesAt(f, moment).forEach((share, bin) => {
          const c = f.bins[bin];
          if (c) c.expected += share;
        });
      }
    });
    for (; s < scrapes; s++) scrape();
  }
  return {
    observations,
    series: features.flatMap((f) =>
      f.bins.flatMap((c, bin) => [
        {
          series: `delay_features_observations_total{feature="${f.name}",bin="${bin}"}`,
          values: c.observedAt.join(' '),
        },
        {
          series: `delay_features_expected_total{feature="${f.name}",bin="${bin}"}`,
          values: c.expectedAt.join(' '),
        },
      ]),
    ),
  };
}

export async function simulateDriftAlert(options: SimulationOptions): Promise<ScenarioResult[]> {
  const { scrapeSeconds = 15, promtool = 'promtool' } = options;
  const observations: number[] = [];
  const tests = options.scenarios.map((scenario, i) => {
    const minutes = minutesOf(scenario);
    const counters = counterSeries(options, scenario, i);
    observations.push(counters.observations);
    const query = (kind: string, expr: string, at = minutes) => taggedQuery(String(i), kind, expr, at);
    // PSI is read hour by hour: promtool's query engine refuses one subquery over days of 15 s steps.
    const hours = Array.from({ length: Math.ceil(minutes / 60) }, (_, h) => Math.min((h + 1) * 60, minutes));
    return {
      name: scenario.name,
      interval: `${scrapeSeconds}s`,
      input_series: counters.series,
      promql_expr_test: [
        query(
          'windows',
          `count_over_time(max(max_over_time(${ALERT}[${WINDOW_MINUTES}m]))[${minutes}m:${WINDOW_MINUTES}m])`,
        ),
        query(
          'first',
          `min by (feature) (min_over_time(timestamp(${ALERT})[${minutes}m:${scrapeSeconds}s]))`,
        ),
        ...hours.map((end, h) =>
          query(
            'psi',
            `max_over_time((feature:delay_feature_psi:5m and on (feature) feature:delay_features_observations:increase5m >= ${MIN_OBSERVATIONS})[${end - h * 60}m:${scrapeSeconds}s])`,
            end,
          ),
        ),
      ],
    };
  });
  const samples = await evaluateRules(tests, { evaluationInterval: `${scrapeSeconds}s`, promtool });
  return options.scenarios.map((scenario, i) => {
    const of = (kind: string) =>
      samples.filter((s) => s.labels.scenario === String(i) && s.labels.query === kind);
    const perFeature = (kind: string, pick: (a: number, b: number) => number, keep = (_: string) => true) => {
      const out: Record<string, number> = {};
      for (const s of of(kind)) {
        const feature = s.labels.feature ?? '';
        if (!keep(feature)) continue;
        out[feature] = feature in out ? pick(out[feature] as number, s.value) : s.value;
      }
      return out;
    };
    const minutes = minutesOf(scenario);
    return {
      name: scenario.name,
      minutes,
      observations: observations[i] ?? 0,
      windows: Math.floor(minutes / WINDOW_MINUTES),
      firingWindows: of('windows')[0]?.value ?? 0,
      firstFiring: perFeature('first', Math.min),
      maxPsi: perFeature('psi', Math.max, (f) => !isWeather(f)),
      weatherPsi: perFeature('psi', Math.max, isWeather),
    };
  });
}
