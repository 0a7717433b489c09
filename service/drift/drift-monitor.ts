import type { Logger } from 'pino';
import type { DriftBaseline } from '../domain/drift-baseline.js';
import type { WeatherSource } from '../domain/weather.js';
import { FEATURE_NAMES, type FeatureName, WEATHER_FEATURES } from '../features/booking-features.js';
import { monthOf, weekHourOf } from '../features/moments.js';
import type { ServiceMetrics } from '../telemetry/service-metrics.js';

/**
 * Features whose live distribution is compared with training (PSI, computed by Prometheus). Calendar features
 * are left out: any short window holds one hour and one month, which would read as drift all day long; so is
 * rain_at_rush_mm_h, which is 0 outside rush hours (precipitation_mm_h watches the rain).
 */
export const DRIFT_FEATURES: readonly FeatureName[] = [
  'distance_km',
  'estimated_duration_min',
  'driver_active_bookings',
  'priority_code',
  'temperature_c',
  'precipitation_mm_h',
  'snow_mm_h',
  'wind_speed_m_s',
  'visibility_km',
];

/**
 * Weather features count only where the weather was measured (API or cache). Defaults stand in for an
 * outage or a missing key: that is the weather alerts' business, and as drift it would page for the wrong cause.
 */
export const measuredWeather = (source: WeatherSource) => source === 'api' || source === 'cache';

/** Bin of `x` under the trainer's rule (models/trainer.py): bin k holds edges[k-1] < x <= edges[k]. */
export function binOf(edges: number[], x: number): number {
  let bin = 0;
  while (bin < edges.length && (edges[bin] as number) < x) bin += 1;
  return bin;
}

type BinCount = { labels: { feature: string; bin: string }; n: number };

/** The moments a booking falls in: its hour of the week and its month. */
export const momentOf = (vector: readonly number[]) => ({
  weekHour: weekHourOf(vector),
  month: monthOf(vector),
});

/**
 * The training shares a feature's observation is expected to follow at a moment: its month's for weather, its hour
 * of the week's otherwise, the year's for a moment the card lacks.
 */
export function sharesAt(
  f: { moments: Record<string, number[]>; ratios: readonly number[]; weather: boolean },
  moment: ReturnType<typeof momentOf>,
): readonly number[] {
  return f.moments[f.weather ? moment.month : moment.weekHour] ?? f.ratios;
}

/**
 * Counts served feature values into the training bins of the baseline model (`delay_features_observations_total`),
 * adds what each observation's moment would have given each bin (`delay_features_expected_total`: the shares of
 * the same hour of the week, or the same month for weather, in the training data) and exports the model's
 * share of each bin over the whole year (`delay_features_baseline_ratio`). Bin k holds edges[k-1] < x <= edges[k],
 * the trainer's rule.
 */
export function createDriftMonitor(metrics: ServiceMetrics) {
  /** The watched features of the baseline: where each reads its value, its edges, ratios and counters. */
  let watched: {
    index: number;
    edges: number[];
    ratios: number[];
    /** Shares per moment: the hour of the week, or the month for a weather feature. */
    moments: Record<string, number[]>;
    counts: BinCount[];
    expected: BinCount[];
    weather: boolean;
  }[] = [];
  let baselineVersion: string | null = null;
  // Cumulative per (feature, bin) across baselines, as the exported counter must be.
  const counts = new Map<string, BinCount>();
  // What the observations would have been, bin by bin, had each followed its moment's training shares.
  const expectedCounts = new Map<string, BinCount>();
  const countIn = (map: Map<string, BinCount>) => (feature: string, bin: number) => {
    const key = `${feature}\u0000${bin}`;
    let count = map.get(key);
    if (!count) {
      count = { labels: { feature, bin: String(bin) }, n: 0 };
      map.set(key, count);
    }
    return count;
  };
  const countOf = countIn(counts);
  const expectedOf = countIn(expectedCounts);

  metrics.featureObservations.addCallback((result) => {
    for (const { labels, n } of counts.values()) result.observe(n, labels);
  });
  metrics.featureExpected.addCallback((result) => {
    for (const { labels, n } of expectedCounts.values()) result.observe(n, labels);
  });
  metrics.featureBaselineRatio.addCallback((result) => {
    for (const f of watched) {
      f.ratios.forEach((ratio, bin) => {
        result.observe(ratio, (f.counts[bin] as BinCount).labels);
      });
    }
  });

  return {
    /** Switches the comparison to another model's training distribution. */
    setBaseline(next: DriftBaseline) {
      baselineVersion = next.model_version;
      watched = next.features
        // The model card is checked at load; a baseline from elsewhere with bins and ratios that disagree
        // would index past its counters.
        .filter(
          (f) =>
            DRIFT_FEATURES.includes(f.name as FeatureName) &&
            f.baseline_ratios.length === f.bin_edges.length + 1,
        )
        .map((f) => ({
          index: FEATURE_NAMES.indexOf(f.name as FeatureName),
          edges: f.bin_edges,
          ratios: f.baseline_ratios,
          moments: f.moments ?? {},
          counts: f.baseline_ratios.map((_, bin) => countOf(f.name, bin)),
          expected: f.baseline_ratios.map((_, bin) => expectedOf(f.name, bin)),
          weather: WEATHER_FEATURES.includes(f.name as FeatureName),
        }));
    },

    baselineVersion: () => baselineVersion,

    /** `weatherSources[i]` says where vector i's weather came from (see `measuredWeather`). */
    observe(vectors: number[][], weatherSources: readonly WeatherSource[]) {
      vectors.forEach((vector, i) => {
        const measured = measuredWeather(weatherSources[i] ?? 'disabled');
        const moment = momentOf(vector);
        for (const f of watched) {
          if (f.weather && !measured) continue;
          (f.counts[binOf(f.edges, vector[f.index] as number)] as BinCount).n += 1;
          sharesAt(f, moment).forEach((share, bin) => {
            (f.expected[bin] as BinCount).n += share;
          });
        }
      });
    },
  };
}

export type DriftMonitor = ReturnType<typeof createDriftMonitor>;

export interface ServingModels {
  /** The flag's split, as the service reads it. */
  split: () => readonly { variant: string; weight: number }[];
  /** Versions loaded, in load order. */
  loaded: () => readonly string[];
  baselineOf: (version: string) => DriftBaseline | undefined;
}

/**
 * Drift is measured against the training distribution of the model taking the most traffic (then of any
 * loaded model). Returns the choice, to run at start and after every flag change or model load.
 */
export function followServingModel(drift: DriftMonitor, models: ServingModels, logger: Logger) {
  return () => {
    const byWeight = [...models.split()].sort((a, b) => b.weight - a.weight).map((s) => s.variant);
    for (const version of [...byWeight, ...models.loaded()]) {
      const baseline = models.loaded().includes(version) ? models.baselineOf(version) : undefined;
      if (baseline) {
        if (drift.baselineVersion() !== version) logger.info({ model_version: version }, 'drift baseline');
        drift.setBaseline(baseline);
        return;
      }
    }
  };
}
