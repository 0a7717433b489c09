import { and, gte, lt } from 'drizzle-orm';
import { predictions } from '../../db/schema.js';
import type { DriftBaseline } from '../domain/drift-baseline.js';
import { THRESHOLDS } from '../domain/rollback-policy.js';
import type { WeatherSource } from '../domain/weather.js';
import { FEATURE_NAMES, type FeatureName, WEATHER_FEATURES } from '../features/booking-features.js';
import type { Db } from '../storage/database.js';
import { binOf, DRIFT_FEATURES, measuredWeather } from './drift-monitor.js';

/** The same epsilon as the Prometheus rule: empty bins count as 1e-4 on both sides. */
export const PSI_EPSILON = 1e-4;
export const PSI_LIMIT = THRESHOLDS.psi.drift;
export const KS_P_LIMIT = 0.01;
export const KS_D_LIMIT = 0.1;

/** Population stability index of live bin counts against baseline shares. */
export function psi(liveCounts: number[], baselineRatios: number[]): number {
  const total = liveCounts.reduce((s, c) => s + c, 0);
  if (total === 0) return Number.NaN;
  return baselineRatios.reduce((sum, base, bin) => {
    const live = Math.max((liveCounts[bin] ?? 0) / total, PSI_EPSILON);
    const b = Math.max(base, PSI_EPSILON);
    return sum + (live - b) * Math.log(live / b);
  }, 0);
}

/** Two-sample Kolmogorov-Smirnov statistic and its asymptotic p-value. */
export function ksTest(a: number[], b: number[]): { d: number; p: number } {
  const x = [...a].sort((p, q) => p - q);
  const y = [...b].sort((p, q) => p - q);
  let i = 0;
  let j = 0;
  let d = 0;
  while (i < x.length && j < y.length) {
    const v = Math.min(x[i] as number, y[j] as number);
    while (i < x.length && (x[i] as number) <= v) i += 1;
    while (j < y.length && (y[j] as number) <= v) j += 1;
    d = Math.max(d, Math.abs(i / x.length - j / y.length));
  }
  const ne = (x.length * y.length) / (x.length + y.length);
  const lambda = (Math.sqrt(ne) + 0.12 + 0.11 / Math.sqrt(ne)) * d;
  // Kolmogorov's series; below lambda 0.3 it does not converge in practice, and Q(0.3) rounds to 1 anyway.
  if (lambda < 0.3) return { d, p: 1 };
  let p = 0;
  for (let k = 1; k <= 100; k++) p += 2 * (-1) ** (k - 1) * Math.exp(-2 * k * k * lambda * lambda);
  return { d, p: Math.min(Math.max(p, 0), 1) };
}

export interface FeatureDrift {
  feature: FeatureName;
  n: number;
  psi: number | null;
  ks_d: number | null;
  ks_p: number | null;
  drift: boolean | null;
}

async function vectors(db: Db, from: Date, to: Date, limit: number) {
  const rows = await db
    .select({ features: predictions.features, weatherSource: predictions.weatherSource })
    .from(predictions)
    .where(and(gte(predictions.predictedAt, from), lt(predictions.predictedAt, to)))
    .limit(limit);
  return rows.filter((r) => Array.isArray(r.features) && r.features.length === FEATURE_NAMES.length);
}

/** A feature's served values; weather features only where the weather was measured, as the monitor counts. */
function valuesOf(rows: Awaited<ReturnType<typeof vectors>>, feature: FeatureName) {
  const index = FEATURE_NAMES.indexOf(feature);
  const weather = WEATHER_FEATURES.includes(feature);
  return rows
    .filter((r) => !weather || measuredWeather(r.weatherSource as WeatherSource))
    .map((r) => r.features[index] as number);
}

/**
 * Drift of the served feature vectors in a window: PSI against the model card's training bins (what the
 * alert computes), and a KS test against a reference window of served vectors. A feature drifts when PSI
 * exceeds 0.1, or when KS finds a difference both significant (p < 0.01) and material (D > 0.1); with fewer
 * than `minSamples` observations there is no verdict.
 */
export async function driftReport({
  db,
  baseline,
  window,
  reference,
  minSamples = 500,
  limit = 200_000,
}: {
  db: Db;
  baseline: DriftBaseline;
  window: { from: Date; to: Date };
  reference?: { from: Date; to: Date };
  minSamples?: number;
  limit?: number;
}): Promise<{ window: { from: string; to: string }; features: FeatureDrift[]; drift: boolean }> {
  const live = await vectors(db, window.from, window.to, limit);
  const ref = reference ? await vectors(db, reference.from, reference.to, limit) : [];
  const features = DRIFT_FEATURES.map((feature): FeatureDrift => {
    const bins = baseline.features.find((f) => f.name === feature);
    const values = valuesOf(live, feature);
    if (values.length < minSamples || !bins)
      return { feature, n: values.length, psi: null, ks_d: null, ks_p: null, drift: null };
    const counts = bins.baseline_ratios.map(() => 0);
    for (const x of values) {
      const bin = binOf(bins.bin_edges, x);
      counts[bin] = (counts[bin] ?? 0) + 1;
    }
    const featurePsi = psi(counts, bins.baseline_ratios);
    const refValues = valuesOf(ref, feature);
    const ks = refValues.length >= minSamples ? ksTest(values, refValues) : null;
    const drift = featurePsi > PSI_LIMIT || (ks !== null && ks.p < KS_P_LIMIT && ks.d > KS_D_LIMIT);
    const round = (x: number) => Math.round(x * 10_000) / 10_000;
    return {
      feature,
      n: values.length,
      psi: round(featurePsi),
      ks_d: ks ? round(ks.d) : null,
      ks_p: ks ? round(ks.p) : null,
      drift,
    };
  });
  return {
    window: { from: window.from.toISOString(), to: window.to.toISOString() },
    features,
    drift: features.some((f) => f.drift === true),
  };
}
