import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { InferenceSession, Tensor } from 'onnxruntime-node';
import { z } from 'zod';
import { FEATURE_NAMES, FEATURE_SCHEMA } from '../features/booking-features.js';
import type { PointEstimate } from '../predictors/heuristic.js';
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
        z.object({ name: z.string(), bin_edges: z.array(z.number()), baseline_ratios: z.array(z.number()) }),
      ),
    })
    .optional(),
});
export type ModelCard = z.infer<typeof ModelCardSchema>;

/** How many of a prediction's contributions the API returns, largest first. */
export const TOP_CONTRIBUTIONS = 5;

const round = (x: number, digits: number) => Math.round(x * 10 ** digits) / 10 ** digits;

export interface ScoredRow extends PointEstimate {
  /** Every feature's contribution, in FEATURE_SCHEMA order: they sum to delay - expected_value. */
  all_contributions: number[];
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
 * (the service scales by processes, not by threads inside one prediction). One `run` scores a whole batch.
 */
export interface OnnxModel extends ModelPredictor {
  card: ModelCard;
  /** Scores rows already in FEATURE_SCHEMA order (row-major, n x width). */
  score(rows: Float32Array, n: number): Promise<ScoredRow[]>;
}

export async function loadOnnxModel(dir: string, version: string): Promise<OnnxModel> {
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

  async function score(rows: Float32Array, n: number): Promise<ScoredRow[]> {
    const out = await session.run({ features: new Tensor('float32', rows, [n, width]) });
    const [delay, low, high, contributions] = (['delay', 'low', 'high', 'contributions'] as const).map(
      (name) => (out[name] as Tensor).data as Float32Array,
    ) as [Float32Array, Float32Array, Float32Array, Float32Array];
    const scored: ScoredRow[] = [];
    for (let i = 0; i < n; i++) {
      const all = Array.from(contributions.subarray(i * width, (i + 1) * width));
      scored.push({
        delay_minutes: delay[i] as number,
        interval: {
          low: low[i] as number,
          high: high[i] as number,
          level: card.interval_level,
        },
        all_contributions: all,
        contributing_factors: all
          .map((minutes, f) => readableFactor(f, rows[i * width + f] as number, minutes))
          .sort((a, b) => Math.abs(b.minutes) - Math.abs(a.minutes))
          .slice(0, TOP_CONTRIBUTIONS),
      });
    }
    return scored;
  }

  return {
    version,
    card,
    ...(card.drift ? { driftBaseline: { model_version: version, features: card.drift.features } } : {}),
    score,
    predict(vectors: number[][]) {
      const rows = new Float32Array(vectors.length * width);
      vectors.forEach((vector, i) => {
        rows.set(vector, i * width);
      });
      return score(rows, vectors.length);
    },
  };
}
