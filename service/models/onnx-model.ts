import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Histogram } from '@opentelemetry/api';
import { InferenceSession, Tensor } from 'onnxruntime-node';
import { z } from 'zod';
import { type ContributingFactor, floorFactor, type PointEstimate } from '../domain/estimate.js';
import { FEATURE_NAMES, FEATURE_SCHEMA } from '../features/booking-features.js';
import { SHADOW_BASIS } from '../features/moments.js';
import { CardMismatchError, FeatureSchemaError, InvalidArtifactError } from './model-errors.js';
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

/**
 * Rows in one ONNX Runtime call at most when concurrent predictions are coalesced; larger batches split. A call
 * holds the event loop: 250 rows take about 6 ms, at the same cost per row as calls of 1,000 (25 µs of CPU per
 * row on a 2-core development machine), so requests are answered between the calls of a large batch.
 */
const MAX_ROWS_PER_CALL = 250;
/**
 * Predictions of at most this many rows (a single booking, a small batch) are scored before the rows of larger
 * ones waiting with them: a batch of 1,000 costs a single prediction one call, never a queue of them.
 */
const SMALL_CALL_ROWS = 16;

/**
 * The model itself was slow: a call of ONNX Runtime serving the prediction took longer than the timeout. Only the
 * model's own time counts: the CPU time of the call and of reading its outputs, on the thread that runs them. The
 * time its rows waited behind other requests, or for a CPU other processes held, is load, not the model.
 */
export class ModelTimeoutError extends Error {
  constructor(
    readonly modelVersion: string,
    readonly inferenceMs: number,
    readonly timeoutMs: number,
  ) {
    super(
      `${modelVersion} took ${Math.round(inferenceMs)} ms of CPU to score its rows, over the ${timeoutMs} ms timeout`,
    );
    this.name = 'ModelTimeoutError';
  }
}

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
 * (the service scales by processes, not by threads inside one prediction). `predict` calls waiting together
 * share a `run` of up to 250 rows, small ones first; a larger batch takes several.
 */
export interface OnnxModel extends ModelPredictor {
  card: ModelCard;
  /** Scores rows already in FEATURE_SCHEMA order (row-major, n x width). */
  score(rows: Float32Array, n: number): Promise<ScoredRow[]>;
}

export interface OnnxModelOptions {
  /** Records the rows of each ONNX Runtime call (`delay_models_inference_rows`). */
  inferenceRows?: Histogram;
  /**
   * `predict` rejects with ModelTimeoutError when a call scoring its rows took more CPU time than this
   * (ML_TIMEOUT_MS). The call is synchronous: the answer is there, but a model this slow holds every request.
   */
  timeoutMs?: number;
}

/**
 * The card of `version`, as the service reads it: a card of that version whose graph is `<version>.onnx`, over the
 * features this service computes (names, order and units of FEATURE_SCHEMA). Throws a ModelVersionError.
 */
export function parseModelCard(version: string, raw: unknown): ModelCard {
  const parsed = ModelCardSchema.safeParse(raw);
  if (!parsed.success)
    throw new InvalidArtifactError(
      version,
      `the card is not one the service reads: ${z.prettifyError(parsed.error).replaceAll('\n', '; ')}`,
    );
  const card = parsed.data;
  if (card.version !== version) throw new CardMismatchError(version, `describes ${card.version}`);
  if (card.onnx.file !== `${version}.onnx`)
    throw new CardMismatchError(version, `names its graph ${card.onnx.file}, not ${version}.onnx`);
  const names = card.feature_schema.map((f) => f.name);
  if (names.join(',') !== FEATURE_NAMES.join(',')) {
    throw new FeatureSchemaError(
      version,
      `${version} expects features [${names.join(', ')}]; this service computes [${FEATURE_NAMES.join(', ')}]`,
    );
  }
  const unit = card.feature_schema.findIndex((f, i) => f.unit !== FEATURE_SCHEMA[i]?.unit);
  if (unit >= 0) {
    throw new FeatureSchemaError(
      version,
      `${version} expects ${names[unit]} in ${card.feature_schema[unit]?.unit}; this service computes it in ${FEATURE_SCHEMA[unit]?.unit}`,
    );
  }
  return card;
}

/** What the service feeds the graph and reads of it. */
const GRAPH_INPUT = 'features';
const GRAPH_OUTPUTS = ['delay', 'low', 'high', 'contributions'] as const;

/**
 * One ONNX Runtime session on `graph`, with a single intra-op thread; a graph ONNX Runtime cannot load, or
 * without the input and outputs the service uses, throws InvalidArtifactError.
 */
export async function createModelSession(version: string, graph: Uint8Array): Promise<InferenceSession> {
  let session: InferenceSession;
  try {
    session = await InferenceSession.create(graph, {
      intraOpNumThreads: 1,
      interOpNumThreads: 1,
      executionMode: 'sequential',
      graphOptimizationLevel: 'all',
    });
  } catch (err) {
    throw new InvalidArtifactError(version, `ONNX Runtime cannot load the graph: ${(err as Error).message}`);
  }
  const missing = [GRAPH_INPUT].filter((name) => !session.inputNames.includes(name));
  missing.push(...GRAPH_OUTPUTS.filter((name) => !session.outputNames.includes(name)));
  if (missing.length > 0) {
    await session.release();
    throw new InvalidArtifactError(
      version,
      `the graph lacks ${missing.join(', ')}: the service feeds ${GRAPH_INPUT} and reads ${GRAPH_OUTPUTS.join(', ')}`,
    );
  }
  return session;
}

/** A model version from its files in `dir`: `<version>.json` and the graph it names. */
export async function loadOnnxModel(dir: string, version: string, options: OnnxModelOptions = {}) {
  const raw: unknown = JSON.parse(await readFile(join(dir, `${version}.json`), 'utf8'));
  const card = parseModelCard(version, raw);
  return onnxModel({ version, card, graph: await readFile(join(dir, card.onnx.file)) }, options);
}

/** A model version from the registry: its card as stored, its graph's bytes and their digest. */
export async function onnxModelFromArtifact(
  artifact: { version: string; digest: string; card: unknown; onnx: Uint8Array },
  options: OnnxModelOptions = {},
) {
  const { version, digest, onnx } = artifact;
  return onnxModel({ version, digest, card: parseModelCard(version, artifact.card), graph: onnx }, options);
}

async function onnxModel(
  { version, digest, card, graph }: { version: string; digest?: string; card: ModelCard; graph: Uint8Array },
  { inferenceRows, timeoutMs = Number.POSITIVE_INFINITY }: OnnxModelOptions,
): Promise<OnnxModel> {
  const session = await createModelSession(version, graph);
  const width = FEATURE_NAMES.length;

  const attributes = { model_version: version };
  /**
   * Scores `n` rows, and says how long the model took: the thread's CPU time from the moment ONNX Runtime starts
   * to the last row read.
   */
  async function timedScore(rows: Float32Array, n: number) {
    inferenceRows?.record(n, attributes);
    // ONNX Runtime runs the graph synchronously (one intra-op thread: this one) in an immediate it queues inside
    // `run`: one queued just before it runs just before it, so the clock starts with the model, not with the
    // event loop's work before it.
    let began = process.threadCpuUsage();
    setImmediate(() => {
      began = process.threadCpuUsage();
    });
    const out = await session.run({ [GRAPH_INPUT]: new Tensor('float32', rows, [n, width]) });
    const [delay, low, high, contributions] = GRAPH_OUTPUTS.map(
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
    const used = process.threadCpuUsage(began);
    return { scored, inferenceMs: (used.user + used.system) / 1000 };
  }

  // Scoring concurrent requests' rows in one call took a bare handler from about 15,000 to 30,000 requests/s
  // (docs/performance.md). Calls run one at a time, each in its own turn of the event loop, so requests are read
  // and answered between them; small predictions go first. A failed run fails every prediction that shared it.
  interface Call {
    scored: ScoredRow[];
    left: number;
    done: boolean;
    slowestMs: number;
    resolve: (rows: ScoredRow[]) => void;
    reject: (err: Error) => void;
  }
  interface Waiting {
    vector: number[];
    call: Call;
    index: number;
  }
  const small: Waiting[] = [];
  const large: Waiting[] = [];
  /** A call is queued or running: the next one is scheduled when it ends. */
  let scheduled = false;

  /** Scores the next rows waiting, small predictions first; the call after it is scheduled once it is done. */
  function next() {
    const taken = small.splice(0, MAX_ROWS_PER_CALL);
    taken.push(...large.splice(0, MAX_ROWS_PER_CALL - taken.length));
    const rows = new Float32Array(taken.length * width);
    taken.forEach(({ vector }, i) => {
      rows.set(vector, i * width);
    });
    const calls = new Set(taken.map((w) => w.call));
    const settle = (call: Call, outcome: ScoredRow[] | Error) => {
      call.done = true;
      if (outcome instanceof Error) call.reject(outcome);
      else call.resolve(outcome);
    };
    timedScore(rows, taken.length)
      .then(
        ({ scored, inferenceMs }) => {
          taken.forEach(({ call, index }, i) => {
            call.scored[index] = scored[i] as ScoredRow;
            call.left -= 1;
            call.slowestMs = Math.max(call.slowestMs, inferenceMs);
          });
          for (const call of calls) {
            if (call.left > 0) continue;
            settle(
              call,
              call.slowestMs > timeoutMs
                ? new ModelTimeoutError(version, call.slowestMs, timeoutMs)
                : call.scored,
            );
          }
        },
        (err: Error) => {
          for (const call of calls) settle(call, err);
        },
      )
      .finally(() => {
        scheduled = false;
        // Rows of a prediction that already failed are not scored.
        for (const lane of [small, large]) {
          const live = lane.filter((w) => !w.call.done);
          lane.splice(0, lane.length, ...live);
        }
        if (small.length + large.length > 0) schedule();
      });
  }
  function schedule() {
    if (scheduled) return;
    scheduled = true;
    setImmediate(next);
  }

  function predict(vectors: number[][]): Promise<ScoredRow[]> {
    // A vector of the wrong width fails its own prediction, never shifting its neighbours' rows.
    const wrong = vectors.find((vector) => vector.length !== width);
    if (wrong)
      return Promise.reject(new Error(`${version} expects ${width} features per row, got ${wrong.length}`));
    if (vectors.length === 0) return Promise.resolve([]);
    return new Promise((resolve, reject) => {
      const call: Call = {
        scored: new Array(vectors.length),
        left: vectors.length,
        done: false,
        slowestMs: 0,
        resolve,
        reject,
      };
      const lane = vectors.length <= SMALL_CALL_ROWS ? small : large;
      vectors.forEach((vector, index) => {
        lane.push({ vector, call, index });
      });
      schedule();
    });
  }

  return {
    version,
    ...(digest ? { digest } : {}),
    card,
    ...(card.drift ? { driftBaseline: { model_version: version, features: card.drift.features } } : {}),
    ...(card.shadow_baseline ? { shadowBaseline: card.shadow_baseline } : {}),
    score: async (rows, n) => (await timedScore(rows, n)).scored,
    predict,
  };
}
