import { binOf } from '../drift/drift-monitor.js';
import { FEATURE_NAMES, WEATHER_FEATURES } from '../features/booking-features.js';
import {
  expectedShadowGap,
  MONTHS,
  monthOf,
  SHADOW_BASIS,
  type ShadowBaseline,
  shadowBasis,
  WEEK_HOURS,
  weekHourOf,
} from '../features/moments.js';
import type { ModelPredictor } from '../models/model-registry.js';

/**
 * The card's baselines of what is normal for a moment (service/features/moments.ts): the gap between the
 * model and the rules for a booking like this one, and each drift feature's bin shares for the hour of the week
 * (booking features) or the month (weather). Fitted on the card's own data, by the service's own code, for `npm run train`, `npm run baselines` and
 * retraining alike.
 */

/** Solves (XᵀX + λI) β = Xᵀy by Cholesky; λ keeps a basis term no row uses at 0. */
export function ridgeFit(
  rows: readonly (readonly number[])[],
  y: readonly number[],
  lambda = 1e-3,
): number[] {
  const p = (rows[0] as readonly number[]).length;
  const a = Array.from({ length: p }, (_, i) => Array.from({ length: p }, (_, j) => (i === j ? lambda : 0)));
  const b = new Array<number>(p).fill(0);
  rows.forEach((x, r) => {
    for (let i = 0; i < p; i++) {
      const xi = x[i] as number;
      if (xi === 0) continue;
      b[i] = (b[i] as number) + xi * (y[r] as number);
      const ai = a[i] as number[];
      for (let j = 0; j < p; j++) ai[j] = (ai[j] as number) + xi * (x[j] as number);
    }
  });
  // A = L Lᵀ, then L z = b and Lᵀ β = z.
  const l = Array.from({ length: p }, () => new Array<number>(p).fill(0));
  for (let i = 0; i < p; i++) {
    for (let j = 0; j <= i; j++) {
      let s = (a[i] as number[])[j] as number;
      for (let k = 0; k < j; k++) s -= ((l[i] as number[])[k] as number) * ((l[j] as number[])[k] as number);
      (l[i] as number[])[j] = i === j ? Math.sqrt(s) : s / ((l[j] as number[])[j] as number);
    }
  }
  const z = new Array<number>(p).fill(0);
  for (let i = 0; i < p; i++) {
    let s = b[i] as number;
    for (let k = 0; k < i; k++) s -= ((l[i] as number[])[k] as number) * (z[k] as number);
    z[i] = s / ((l[i] as number[])[i] as number);
  }
  const beta = new Array<number>(p).fill(0);
  for (let i = p - 1; i >= 0; i--) {
    let s = z[i] as number;
    for (let k = i + 1; k < p; k++) s -= ((l[k] as number[])[i] as number) * (beta[k] as number);
    beta[i] = s / ((l[i] as number[])[i] as number);
  }
  return beta;
}

const round = (x: number, digits = 6) => Math.round(x * 10 ** digits) / 10 ** digits;

export interface CardShadowBaseline extends ShadowBaseline {
  rows: number;
  /** Mean |ML - shadow - expected| on those rows: how far a healthy booking departs from its baseline. */
  mean_abs_departure: number;
  /** The same, signed: 0 up to the fit's rounding. */
  mean_departure: number;
}

export function fitShadowBaseline(
  vectors: readonly (readonly number[])[],
  mlDelays: readonly number[],
  heuristicDelays: readonly number[],
): CardShadowBaseline {
  const gaps = mlDelays.map((d, i) => d - (heuristicDelays[i] as number));
  const coefficients = ridgeFit(vectors.map(shadowBasis), gaps).map((c) => round(c));
  const baseline = { basis: SHADOW_BASIS, coefficients };
  const departures = vectors.map((v, i) => (gaps[i] as number) - expectedShadowGap(baseline, v));
  const mean = (xs: number[]) => xs.reduce((s, x) => s + x, 0) / xs.length;
  return {
    ...baseline,
    rows: vectors.length,
    mean_abs_departure: round(mean(departures.map(Math.abs)), 4),
    mean_departure: round(mean(departures), 4),
  };
}

interface CardDriftFeature {
  name: string;
  bin_edges: number[];
  baseline_ratios: number[];
  moments?: Record<string, number[]>;
}

/** Training rows a moment's shares are pulled toward its prior by: a thin night hour stays close to its prior. */
export const MOMENT_PRIOR_ROWS = 100;

const sharesOf = (counts: readonly number[], prior: readonly number[]) => {
  const n = counts.reduce((s, x) => s + x, 0);
  return counts.map((x, bin) => (x + MOMENT_PRIOR_ROWS * (prior[bin] as number)) / (n + MOMENT_PRIOR_ROWS));
};

/**
 * Each drift feature's bin shares per moment: weather features per month, the others per hour of the week.
 * Shrunk by MOMENT_PRIOR_ROWS toward a prior: a month toward the year; an hour of the week toward the same hour of
 * every day (itself toward the year), as a weekend night has few training rows and is like a weekday night, while
 * the year's shares would read as rush-hour traffic.
 */
export function momentRatios(
  vectors: readonly (readonly number[])[],
  feature: CardDriftFeature,
  weather: boolean,
): Record<string, number[]> {
  const index = FEATURE_NAMES.indexOf(feature.name as (typeof FEATURE_NAMES)[number]);
  const keys = weather ? MONTHS : WEEK_HOURS;
  const keyOf = weather ? monthOf : weekHourOf;
  const bins = feature.baseline_ratios.length;
  const counts = new Map(keys.map((k) => [k, new Array<number>(bins).fill(0)]));
  for (const v of vectors) {
    const c = counts.get(keyOf(v)) as number[];
    const bin = binOf(feature.bin_edges, v[index] as number);
    c[bin] = (c[bin] as number) + 1;
  }
  // An hour of the week's key ends with its hour ("weekday 08"): the same hour of every day pools both.
  const hourOf = (key: string) => key.slice(-2);
  const pooled = new Map<string, number[]>();
  if (!weather) {
    for (const [key, c] of counts) {
      const p = pooled.get(hourOf(key)) ?? new Array<number>(bins).fill(0);
      pooled.set(
        hourOf(key),
        p.map((x, bin) => x + (c[bin] as number)),
      );
    }
  }
  return Object.fromEntries(
    keys.map((k) => {
      const prior = weather
        ? feature.baseline_ratios
        : sharesOf(pooled.get(hourOf(k)) as number[], feature.baseline_ratios);
      return [k, sharesOf(counts.get(k) as number[], prior).map((x) => round(x, 5))];
    }),
  );
}

/**
 * Adds the moment baselines to a card: the shadow gap's, fitted on the holdout vectors as `model` scores them
 * against the heuristic's answers, and each drift feature's shares per moment, counted on the training vectors.
 */
export async function withMomentBaselines<
  Card extends { drift?: { features: CardDriftFeature[] } } & Record<string, unknown>,
>(
  card: Card,
  d: {
    model: Pick<ModelPredictor, 'predict'>;
    trainVectors: number[][];
    testVectors: number[][];
    heuristicDelays: readonly number[];
  },
) {
  const scored = await d.model.predict(d.testVectors);
  return {
    ...card,
    shadow_baseline: fitShadowBaseline(
      d.testVectors,
      scored.map((s) => s.delay_minutes),
      d.heuristicDelays,
    ),
    ...(card.drift
      ? {
          drift: {
            ...card.drift,
            features: card.drift.features.map((f) => ({
              ...f,
              moments: momentRatios(d.trainVectors, f, WEATHER_FEATURES.includes(f.name as never)),
            })),
          },
        }
      : {}),
  };
}
