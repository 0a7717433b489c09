import { createHash } from 'node:crypto';
import { copyFileSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { and, desc, eq, gte, lt } from 'drizzle-orm';
import { feedback, predictions } from '../../db/schema.js';
import type { WeatherSource } from '../domain/weather.js';
import { measuredWeather } from '../drift/drift-monitor.js';
import { FEATURE_NAMES } from '../features/booking-features.js';
import { loadOnnxModel } from '../models/onnx-model.js';
import type { Db } from '../storage/database.js';
import { withMomentBaselines } from './moment-baselines.js';
import {
  checkSegments,
  type ScoredBooking,
  segmentFigures,
  segmentRegressions,
  segmentsOfRow,
} from './segment-figures.js';
import { runTrainer, type TrainerRun } from './trainer-process.js';

/** A booking as production saw it: the vector the model was given, and what really happened. */
export interface ServedRow {
  bookingId: string;
  predictedAt: Date;
  features: number[];
  actual: number;
  heuristic: number;
  /** The delay the service served for it: the reference of its segments (features/segments.ts). */
  served: number;
  weatherSource: string;
}

/**
 * The served feature vectors with the actual delays from feedback, one row per booking (its first prediction
 * in the window, the one feedback scored), the most recent `maxRows` at most, oldest first. Vectors of another width (an older feature
 * schema) are left out and counted.
 */
export async function exportServedRows(db: Db, window: { from: Date; to: Date }, maxRows: number) {
  const firstServed = db
    .selectDistinctOn([predictions.bookingId], {
      bookingId: predictions.bookingId,
      predictedAt: predictions.predictedAt,
      features: predictions.features,
      heuristic: predictions.shadowHeuristicDelay,
      served: predictions.delayMinutes,
      weatherSource: predictions.weatherSource,
      actual: feedback.actualDelayMinutes,
    })
    .from(predictions)
    .innerJoin(feedback, eq(feedback.bookingId, predictions.bookingId))
    .where(and(gte(predictions.predictedAt, window.from), lt(predictions.predictedAt, window.to)))
    .orderBy(predictions.bookingId, predictions.predictedAt, predictions.id)
    .as('first_served');
  const rows = await db.select().from(firstServed).orderBy(desc(firstServed.predictedAt)).limit(maxRows);
  const usable = rows.filter((r) => Array.isArray(r.features) && r.features.length === FEATURE_NAMES.length);
  usable.sort(
    (a, b) => a.predictedAt.getTime() - b.predictedAt.getTime() || a.bookingId.localeCompare(b.bookingId),
  );
  return { rows: usable as ServedRow[], skippedOtherSchema: rows.length - usable.length };
}

/** Feature columns, the labels, and whether the weather was measured (the trainer's drift bins use only those). */
function csvOf(rows: ServedRow[]) {
  const lines = [[...FEATURE_NAMES, 'actual_delay_minutes', 'heuristic_delay', 'weather_measured'].join(',')];
  for (const r of rows) {
    const measured = measuredWeather(r.weatherSource as WeatherSource) ? 1 : 0;
    lines.push([...r.features, r.actual, r.heuristic, measured].map((v) => Number(v.toFixed(6))).join(','));
  }
  return `${lines.join('\n')}\n`;
}

/**
 * MAE and 80% interval coverage of a model version on rows, overall and per segment, through the service's own
 * ONNX inference. Both models are judged on the same segments: the served delay decides them.
 */
async function scoreOn(dir: string, version: string, rows: ServedRow[]) {
  const model = await loadOnnxModel(dir, version);
  const estimates = await model.predict(rows.map((r) => r.features));
  const scored: ScoredBooking[] = estimates.map((e, i) => {
    const row = rows[i] as ServedRow;
    return {
      actual: row.actual,
      delay: e.delay_minutes,
      low: e.interval.low,
      high: e.interval.high,
      segments: segmentsOfRow(row.features, row.served),
    };
  });
  const report = segmentFigures(scored);
  return { version, mae: report.all.mae, coverage_80: report.all.coverage_80, report };
}

/** The next free version after the champion's: gbt-v2 -> gbt-v3 (-> gbt-v4 when gbt-v3 is taken). */
export function nextVersion(champion: string, taken: (version: string) => boolean): string {
  const match = /^(.*?)(\d+)$/.exec(champion);
  const stem = match ? (match[1] as string) : `${champion}-r`;
  let n = match ? Number(match[2]) + 1 : 1;
  while (taken(`${stem}${n}`)) n += 1;
  return `${stem}${n}`;
}

export interface RetrainOptions {
  db: Db;
  /** Where the champion's graph and card are read. */
  modelsDir: string;
  /** Where a candidate is written (default: modelsDir); the job writes it to its work folder and registers it. */
  outDir?: string;
  champion: string;
  version: string;
  window: { from: Date; to: Date };
  /** Share of the most recent bookings held out to score both models. */
  holdoutShare: number;
  /** The challenger's MAE must be at most (1 - margin) x the champion's on the held-out bookings. */
  margin: number;
  minRows: number;
  /** The most recent bookings kept when the window holds more: bounds memory and training time. */
  maxRows: number;
  estimators: number;
  seed?: number;
  python?: string;
}

/** The run cannot be done as asked (no such champion, a version already taken): retrying cannot help (exit 2). */
export class RetrainError extends Error {}

/** Fewer bookings with feedback in the window than a challenger needs: nothing is trained (exit 3). */
export class TooLittleFeedbackError extends RetrainError {}

/** models/trainer.py could not be started or failed: a failure another run may not meet (exit 1). */
export class TrainerError extends Error {}

function trainerRun(run: TrainerRun) {
  try {
    return runTrainer(run);
  } catch (err) {
    throw new TrainerError((err as Error).message);
  }
}

/** The trainer's bar for the 80% interval: coverage within 4 points of nominal. */
const COVERAGE_BAR = [0.76, 0.84] as const;
const NOMINAL_COVERAGE = 0.8;

/**
 * Trains a challenger on production rows with the same trainer as the first model, scores champion and
 * challenger on the same most recent bookings, and writes the challenger into the models folder, with its
 * card, only when it beats the champion's MAE by the margin, its 80% interval is at least as close to 80%
 * coverage as the champion's, and it meets the segment bar in every judged segment where the champion does. A candidate whose coverage misses the trainer's bar (0.76..0.84, often the case
 * on a few thousand rows) is still one, with a warning: the canary's coverage is watched on the dashboards.
 */
export async function retrain(options: RetrainOptions) {
  const { modelsDir, champion, version } = options;
  const outDir = options.outDir ?? modelsDir;
  if (!existsSync(join(modelsDir, `${champion}.json`))) {
    throw new RetrainError(`no champion ${champion} in ${modelsDir}`);
  }
  for (const dir of new Set([modelsDir, outDir]))
    if (existsSync(join(dir, `${version}.json`)))
      throw new RetrainError(`${version} already exists in ${dir}; choose another --version`);
  const { rows, skippedOtherSchema } = await exportServedRows(options.db, options.window, options.maxRows);
  if (rows.length < options.minRows) {
    throw new TooLittleFeedbackError(
      `${rows.length} bookings with feedback between ${options.window.from.toISOString()} and ` +
        `${options.window.to.toISOString()}; at least ${options.minRows} are needed (widen --days)`,
    );
  }
  const holdoutSize = Math.max(1, Math.round(rows.length * options.holdoutShare));
  const train = rows.slice(0, rows.length - holdoutSize);
  const holdout = rows.slice(rows.length - holdoutSize);

  const work = mkdtempSync(join(tmpdir(), 'delay-retrain-'));
  try {
    const trainCsv = csvOf(train);
    writeFileSync(join(work, 'train.csv'), trainCsv);
    writeFileSync(join(work, 'test.csv'), csvOf(holdout));
    const period = `${options.window.from.toISOString()}..${options.window.to.toISOString()}`;
    const trainer = trainerRun({
      work,
      version,
      outDir: work,
      dataHash: createHash('sha256').update(trainCsv).digest('hex'),
      seed: options.seed ?? 42,
      estimators: options.estimators,
      dataSource: `production predictions with feedback, ${period}`,
      stdio: 'pipe',
      ...(options.python ? { python: options.python } : {}),
    });
    if (trainer.status !== 0) throw new TrainerError(`the trainer failed:\n${trainer.stderr.slice(-2000)}`);

    const { report: championSegments, ...championScore } = await scoreOn(modelsDir, champion, holdout);
    const { report: challengerSegments, ...challengerScore } = await scoreOn(work, version, holdout);
    const regressions = segmentRegressions(
      checkSegments(championSegments),
      checkSegments(challengerSegments),
    );
    const heuristicMae = holdout.reduce((s, r) => s + Math.abs(r.actual - r.heuristic), 0) / holdout.length;
    const requiredMae = Math.round(championScore.mae * (1 - options.margin) * 10_000) / 10_000;
    const beats = challengerScore.mae <= requiredMae;
    const miss = (coverage: number) => Math.abs(coverage - NOMINAL_COVERAGE);
    const intervalNoWorse = miss(challengerScore.coverage_80) <= miss(championScore.coverage_80);
    const candidate = beats && intervalNoWorse && regressions.length === 0;
    const reason = candidate
      ? `MAE ${challengerScore.mae} <= ${requiredMae} (${champion} ${championScore.mae} less ${options.margin * 100}%)`
      : !beats
        ? `MAE ${challengerScore.mae} is not at most ${requiredMae} (${champion} ${championScore.mae} less ${options.margin * 100}%)`
        : !intervalNoWorse
          ? `80% interval coverage ${challengerScore.coverage_80} is further from 0.8 than ${champion}'s ${championScore.coverage_80}`
          : `it misses the segment bar where ${champion} meets it: ${regressions.join('; ')}`;
    const warnings =
      challengerScore.coverage_80 < COVERAGE_BAR[0] || challengerScore.coverage_80 > COVERAGE_BAR[1]
        ? [
            `80% interval coverage ${challengerScore.coverage_80} is outside the trainer's bar ${COVERAGE_BAR.join('..')}`,
          ]
        : [];

    const retraining = {
      window: { from: options.window.from.toISOString(), to: options.window.to.toISOString() },
      rows: {
        with_feedback: rows.length,
        train: train.length,
        holdout: holdout.length,
        skipped_other_schema: skippedOtherSchema,
      },
      holdout_from: holdout[0]?.predictedAt.toISOString(),
      champion: championScore,
      challenger: challengerScore,
      heuristic_mae: Math.round(heuristicMae * 10_000) / 10_000,
      margin: options.margin,
      required_mae: requiredMae,
      segments: {
        reference_delay: 'the served delay',
        champion: championSegments.segments,
        challenger: challengerSegments.segments,
        regressions,
      },
      candidate,
      reason,
      warnings,
    };
    const files = [`${version}.onnx`, `${version}.json`, `${version}.parity.json`];
    if (candidate) {
      const card = await withMomentBaselines(
        JSON.parse(readFileSync(join(work, `${version}.json`), 'utf8')),
        {
          model: await loadOnnxModel(work, version),
          trainVectors: train.map((r) => r.features),
          testVectors: holdout.map((r) => r.features),
          heuristicDelays: holdout.map((r) => r.heuristic),
        },
      );
      writeFileSync(join(work, `${version}.json`), `${JSON.stringify({ ...card, retraining }, null, 2)}\n`);
      for (const file of files) copyFileSync(join(work, file), join(outDir, file));
    }
    return { ...retraining, files: candidate ? files.map((f) => join(outDir, f)) : [] };
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}
