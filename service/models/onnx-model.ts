import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Histogram } from '@opentelemetry/api';
import DataLoader from 'dataloader';
import { InferenceSession, Tensor } from 'onnxruntime-node';
import { z } from 'zod';
import { type ContributingFactor, floorFactor, type PointEstimate } from '../domain/estimate.js';
import { FEATURE_NAMES, FEATURE_SCHEMA } from '../features/booking-features.js';
import { SHADOW_BASIS } from '../features/moments.js';
import type { ModelPredictor } from './model-registry.js';

/** What the service reads of a model card; the rest (metrics, drift bins) is for people and Prometheus. */
const ModelCardSchema = z.object({
  version: z.string().min(1),
  onnx: z.object({ file: z.string().min(1) }),
  feature_schema: z.array(z.object({ name: z.string(), unit: z.string() })),
  interval_level: z.number().gt(0).lt(1),
  expected_value: z.number(),
  drift: z
    .object({
      features: z.array(
        z
          .object({
            name: z.string(),
            bin_edges: z.array(z.number()),
            baseline_ratios: z.array(z.number()),
            moments: z.record(z.string(), z.array(z.number())).optional(),
          })
          .refine((f) => f.baseline_ratios.length === f.bin_edges.length + 1, {
            message: 'a drift feature has one baseline ratio per bin: bin_edges + 1',
          })
          .refine((f) => Object.values(f.moments ?? {}).every((r) => r.length === f.baseline_ratios.length), {
            message: "a drift feature's moment has one ratio per bin, as its baseline",
          }),
      ),
    })
    .optional(),
  shadow_baseline: z
    .object({ basis: z.array(z.string()), coefficients: z.array(z.number()) })
    .refine((b) => b.basis.join(',') === SHADOW_BASIS.join(','), {
      message: "the shadow baseline's basis is not this service's (service/features/moments.ts)",
    })
    .refine((b) => b.coefficients.length === b.basis.length, {
      message: 'the shadow baseline has one coefficient per basis term',
    })
    .optional(),
});
export type ModelCard = z.infer<typeof ModelCardSchema>;

/** Rows in one ONNX Runtime call at most when concurrent predictions are coalesced; larger batches split. */
const MAX_ROWS_PER_CALL = 1000;

/** How many of a prediction's contributions the API returns, largest first. */
export const TOP_CONTRIBUTIONS = 5;

const round = (x: number, digits: number) => Math.round(x * 10 ** digits) / 10 ** digits;

export interface ScoredRow extends PointEstimate {
  /**
   * Every feature's contribution, in FEATURE_SCHEMA order: with `floor_minutes` they sum to
   * delay - expected_value.
   */
  all_contributions: number[];
  /** What the graph's floor at 0 added when the trees' sum was below it; else 0. */
  floor_minutes: number;
}

export function readableFactor(index: number, value: number, minutes: number) {
  const feature = FEATURE_SCHEMA[index] as (typeof FEATURE_SCHEMA)[number];
  const shown = Number.isInteger(value) ? String(value) : value.toFixed(1);
  return {
    factor: feature.name,
    minutes: round(minutes, 3),
    value: round(value, 3),
    label: `${feature.name} ${shown} ${feature.unit}: ${minutes >= 0 ? '+' : ''}${minutes.toFixed(1)} min`,
  };
}

/**
 * One model version: its card and one ONNX Runtime session, created once with a single intra-op thread
 * (the service scales by processes, not by threads inside one prediction). One `run` scores a whole batch,
 * and `predict` calls made in the same turn of the event loop share one `run`.
 */
export interface OnnxModel extends ModelPredictor {
  card: ModelCard;
  /** Scores rows already in FEATURE_SCHEMA order (row-major, n x width). */
  score(rows: Float32Array, n: number): Promise<ScoredRow[]>;
}

export interface OnnxModelOptions {
  /** Records the rows of each ONNX Runtime call (`delay_models_inference_rows`). */
  inferenceRows?: Histogram;
}

export async function loadOnnxModel(
  dir: string,
  version: string,
  { inferenceRows }: OnnxModelOptions = {},
): Promise<OnnxModel> {
  const cardPath = join(dir, `${version}.json`);
  const card = ModelCardSchema.parse(JSON.parse(await readFile(cardPath, 'utf8')));
  if (card.version !== version) throw new Error(`${cardPath} describes ${card.version}, not ${version}`);
  const names = card.feature_schema.map((f) => f.name);
  if (names.join(',') !== FEATURE_NAMES.join(',')) {
    throw new Error(
      `${version} expects features [${names.join(', ')}]; this service computes [${FEATURE_NAMES.join(', ')}]`,
    );
  }
  const session = await InferenceSession.create(join(dir, card.onnx.file), {
    intraOpNumThreads: 1,
    interOpNumThreads: 1,
    executionMode: 'sequential',
    graphOptimizationLevel: 'all',
  });
  const width = FEATURE_NAMES.length;

  const attributes = { model_version: version };
  async function score(rows: Float32Array, n: number): Promise<ScoredRow[]> {
    inferenceRows?.record(n, attributes);
    const out = await session.run({ features: new Tensor('float32', rows, [n, width]) });
    const [delay, low, high, contributions] = (['delay', 'low', 'high', 'contributions'] as const).map(
      (name) => (out[name] as Tensor).data as Float32Array,
    ) as [Float32Array, Float32Array, Float32Array, Float32Array];
    const scored: ScoredRow[] = [];
    for (let i = 0; i < n; i++) {
      const all = Array.from(contributions.subarray(i * width, (i + 1) * width));
      const served = delay[i] as number;
      // Float32 sums differ from the graph's by a few thousandths: only a floored answer (0) has a floor.
      const floor = served === 0 ? Math.max(0, -all.reduce((sum, c) => sum + c, card.expected_value)) : 0;
      const factors: ContributingFactor[] = all
        .map((_, f) => f)
        .sort((a, b) => Math.abs(all[b] as number) - Math.abs(all[a] as number))
        .slice(0, TOP_CONTRIBUTIONS)
        .map((f) => readableFactor(f, rows[i * width + f] as number, all[f] as number));
      if (floor > 0) factors.push(floorFactor(round(floor, 3)));
      scored.push({
        delay_minutes: served,
        interval: {
          low: low[i] as number,
          high: high[i] as number,
          level: card.interval_level,
        },
        all_contributions: all,
        floor_minutes: floor,
        // Labels are built only for the factors returned.
        contributing_factors: factors,
      });
    }
    return scored;
  }

  // Scoring concurrent requests' rows in one call took a bare handler from about 15,000 to 30,000 requests/s
  // (docs/performance.md). A failed run fails every prediction that shared it; a vector of the wrong width
  // fails alone instead of shifting its neighbours' rows.
  const coalesced = new DataLoader<number[], ScoredRow>(
    async (vectors) => {
      const valid = vectors.filter((vector) => vector.length === width);
      const rows = new Float32Array(valid.length * width);
      valid.forEach((vector, i) => {
        rows.set(vector, i * width);
      });
      const scored = valid.length > 0 ? await score(rows, valid.length) : [];
      let next = 0;
      return vectors.map((vector) =>
        vector.length === width
          ? (scored[next++] as ScoredRow)
          : new Error(`${version} expects ${width} features per row, got ${vector.length}`),
      );
    },
    { cache: false, maxBatchSize: MAX_ROWS_PER_CALL, batchScheduleFn: (run) => setImmediate(run) },
  );

  return {
    version,
    card,
    ...(card.drift ? { driftBaseline: { model_version: version, features: card.drift.features } } : {}),
    ...(card.shadow_baseline ? { shadowBaseline: card.shadow_baseline } : {}),
    score,
    predict: (vectors: number[][]) => Promise.all(vectors.map((vector) => coalesced.load(vector))),
  };
}
