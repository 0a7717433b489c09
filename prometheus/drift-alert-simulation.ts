import { generateBookings, type Season } from '../models/generator.js';
import type { DriftBaseline } from '../service/domain/drift-baseline.js';
import { THRESHOLDS } from '../service/domain/rollback-policy.js';
import { NEUTRAL_WEATHER } from '../service/domain/weather.js';
import { binOf, DRIFT_FEATURES } from '../service/drift/drift-monitor.js';
import { bookingFeatures, FEATURE_NAMES, featureVector } from '../service/features/booking-features.js';
import { evaluateRules, taggedQuery } from './promtool-eval.js';

/**
 * Replays generator traffic through the repository's drift rules with promtool: the service's bin counters
 * (`delay_features_observations_total`, counted with the drift monitor's own bin rule) and baseline ratios are
 * written as promtool input series at the production scrape interval, and Prometheus' rule engine evaluates
 * prometheus/rules/*.yml over them at the production evaluation interval. What is read back is the
 * `DelayFeatureDrift` alert's own ALERTS series, so the figures are those of the alert as deployed.
 */
export interface Phase {
  minutes: number;
  season?: Season;
}

export interface Scenario {
  name: string;
  phases: Phase[];
}

export interface ScenarioResult {
  name: string;
  minutes: number;
  /** Aligned 10-minute windows, and those in which the alert was firing at any evaluation. */
  windows: number;
  firingWindows: number;
  /** Seconds from the start of the scenario to the first firing evaluation, per feature. */
  firstFiring: Record<string, number>;
  /** The highest PSI the alert judged (windows with enough observations), per feature: the margin left. */
  maxPsi: Record<string, number>;
}

export interface SimulationOptions {
  baseline: DriftBaseline;
  scenarios: Scenario[];
  seed?: number;
  predictionsPerSecond?: number;
  scrapeSeconds?: number;
  promtool?: string;
}

const ALERT = 'ALERTS{alertname="DelayFeatureDrift",alertstate="firing"}';
const WINDOW_MINUTES = 10;
/** The alert's guard: PSI is judged only on windows with this many observations. */
const MIN_OBSERVATIONS = THRESHOLDS.psi.minObservations;

function binCounters(options: SimulationOptions, scenario: Scenario, seedOffset: number) {
  const { baseline, seed = 1000, predictionsPerSecond = 10, scrapeSeconds = 15 } = options;
  const features = baseline.features
    .filter((f) => DRIFT_FEATURES.includes(f.name as (typeof DRIFT_FEATURES)[number]))
    .map((f) => ({ ...f, index: FEATURE_NAMES.indexOf(f.name as (typeof FEATURE_NAMES)[number]) }));
  const perScrape = predictionsPerSecond * scrapeSeconds;
  const counts = features.map((f) => f.baseline_ratios.map(() => 0));
  const series = features.map((f) => f.baseline_ratios.map(() => [0]));
  const seriesOf = (feature: number, bin: number) => series[feature]?.[bin] ?? [];
  scenario.phases.forEach((phase, p) => {
    const scrapes = (phase.minutes * 60) / scrapeSeconds;
    const rows = generateBookings({
      seed: seed + 1000 * seedOffset + p,
      count: scrapes * perScrape,
      season: phase.season ?? {},
    });
    for (let s = 0; s < scrapes; s++) {
      for (const row of rows.slice(s * perScrape, (s + 1) * perScrape)) {
        const vector = featureVector(bookingFeatures(row.booking, row.weather), NEUTRAL_WEATHER);
        features.forEach((f, i) => {
          const bins = counts[i] as number[];
          const bin = binOf(f.bin_edges, vector[f.index] as number);
          bins[bin] = (bins[bin] as number) + 1;
        });
      }
      counts.forEach((bins, i) => {
        bins.forEach((c, bin) => {
          seriesOf(i, bin).push(c);
        });
      });
    }
  });
  const steps = (series[0]?.[0]?.length ?? 1) - 1;
  return features.flatMap((f, i) =>
    f.baseline_ratios.flatMap((ratio, bin) => [
      {
        series: `delay_features_baseline_ratio{feature="${f.name}",bin="${bin}"}`,
        values: `${ratio}x${steps}`,
      },
      {
        series: `delay_features_observations_total{feature="${f.name}",bin="${bin}"}`,
        values: seriesOf(i, bin).join(' '),
      },
    ]),
  );
}

const minutesOf = (scenario: Scenario) => scenario.phases.reduce((s, p) => s + p.minutes, 0);

export function simulateDriftAlert(options: SimulationOptions): ScenarioResult[] {
  const { scrapeSeconds = 15, promtool = 'promtool' } = options;
  const tests = options.scenarios.map((scenario, i) => {
    const minutes = minutesOf(scenario);
    const query = (kind: string, expr: string, at = minutes) => taggedQuery(String(i), kind, expr, at);
    // PSI is read hour by hour: promtool's query engine refuses one subquery over days of 15 s steps.
    const hours = Array.from({ length: Math.ceil(minutes / 60) }, (_, h) => Math.min((h + 1) * 60, minutes));
    return {
      name: scenario.name,
      interval: `${scrapeSeconds}s`,
      input_series: binCounters(options, scenario, i),
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
  const samples = evaluateRules(tests, { evaluationInterval: `${scrapeSeconds}s`, promtool });
  return options.scenarios.map((scenario, i) => {
    const of = (kind: string) =>
      samples.filter((s) => s.labels.scenario === String(i) && s.labels.query === kind);
    const perFeature = (kind: string, pick: (a: number, b: number) => number) => {
      const out: Record<string, number> = {};
      for (const s of of(kind)) {
        const feature = s.labels.feature ?? '';
        out[feature] = feature in out ? pick(out[feature] as number, s.value) : s.value;
      }
      return out;
    };
    const minutes = minutesOf(scenario);
    return {
      name: scenario.name,
      minutes,
      windows: Math.floor(minutes / WINDOW_MINUTES),
      firingWindows: of('windows')[0]?.value ?? 0,
      firstFiring: perFeature('first', Math.min),
      maxPsi: perFeature('psi', Math.max),
    };
  });
}
