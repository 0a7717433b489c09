import { inArray, sql } from 'drizzle-orm';
import type { Logger } from 'pino';
import { feedback, predictions } from '../../db/schema.js';
import { type BusinessSettings, bookingOutcome, DEFAULT_BUSINESS_SETTINGS } from '../domain/business.js';
import { type SegmentName, segmentsOf } from '../features/segments.js';
import { type BookingRef, bookingRefs, randomBookingRefKey } from '../privacy/booking-ref.js';
import type { Db } from '../storage/database.js';
import type {
  FeedbackArm,
  FeedbackOutcome,
  ServiceMetrics,
  ShadowOpponent,
} from '../telemetry/service-metrics.js';

/** Early arrivals are negative delays; below this floor a value is a unit or sign error (docs/api.md). */
export const ACTUAL_DELAY_FLOOR = -60;
export const ACTUAL_DELAY_CEILING = 24 * 60;

export interface FeedbackItem {
  booking_id: string;
  actual_delay_minutes: number;
  observed_at?: string | undefined;
}

export interface FeedbackResult {
  booking_id: string;
  /** Scored (recorded), a repeat, a correction, or a booking never predicted. */
  outcome: FeedbackOutcome | 'unknown_booking';
}

/**
 * A batch rolled back by a deadlock, a serialization failure or a concurrent first value is tried this often:
 * each retry follows a competitor's commit, so concurrent batches of the same new bookings settle in as many.
 */
const MAX_ATTEMPTS = 5;
/** Another transaction stored the first value of a booking this batch meant to record: the batch is read again. */
class FirstValueRace extends Error {}
/** Deadlock detected, serialization failure: SQLSTATE, on the driver's error or on drizzle's wrapper. */
function retryable(err: unknown): boolean {
  const code = (err as { code?: unknown }).code ?? (err as { cause?: { code?: unknown } }).cause?.code;
  return code === '40P01' || code === '40001';
}

/** Feedback for a prediction older than this is stored and reported, not scored into the live counters. */
export const DEFAULT_LIVE_HORIZON_MS = 48 * 3600_000;

export interface FeedbackServiceOptions {
  db: Db;
  metrics: ServiceMetrics;
  logger: Logger;
  /**
   * The live counters (the rollback rules' input) judge the model serving now: feedback whose prediction was
   * served longer ago than this (a retired version, a replay of old trips) goes to the reports only.
   */
  liveHorizonMs?: number;
  /** The lateness threshold of the business counters, and the cost per minute exported beside them. */
  business?: BusinessSettings;
  /** A booking's pseudonym in the log (docs/privacy.md); by default a key of this service's own. */
  bookingRef?: BookingRef;
  now?: () => number;
}

/**
 * Actual delays, one per booking. The first value of a booking is scored into the error and business counters (per arm:
 * the source that served it, and the heuristic's shadow answer for ML-served bookings) when its prediction is
 * within the live horizon, else counted as late; a repeat changes nothing; a correction replaces the stored
 * value, which the reports use, and is counted as a correction, so each booking weighs once in the counters.
 * A batch is one transaction: its counters move once it is committed, so a failed batch leaves no trace.
 */
export function createFeedbackService({
  db,
  metrics,
  logger,
  liveHorizonMs = DEFAULT_LIVE_HORIZON_MS,
  business = DEFAULT_BUSINESS_SETTINGS,
  bookingRef = bookingRefs(randomBookingRefKey()),
  now = Date.now,
}: FeedbackServiceOptions) {
  const log = logger.child({ component: 'feedback' });
  // Exported only when set: the cost recording rule multiplies by it, so no price means no cost series.
  if (business.costPerDelayMinute !== undefined)
    metrics.businessCostPerDelayMinute.record(business.costPerDelayMinute);

  function score(
    arm: FeedbackArm,
    modelVersion: string,
    segments: readonly SegmentName[],
    predicted: number,
    actual: number,
    interval?: { low: number; high: number },
  ) {
    const labels = { arm, model_version: modelVersion };
    if (interval && actual >= interval.low && actual <= interval.high)
      metrics.feedbackIntervalHits.add(1, labels);
    const error = predicted - actual;
    for (const segment of segments) {
      const bySegment = { ...labels, segment };
      metrics.feedbackSegmentScored.add(1, bySegment);
      metrics.feedbackSegmentOverPrediction.add(Math.max(error, 0), bySegment);
      metrics.feedbackSegmentUnderPrediction.add(Math.max(-error, 0), bySegment);
      if (interval && actual < interval.low) metrics.feedbackSegmentBelowInterval.add(1, bySegment);
      if (interval && actual > interval.high) metrics.feedbackSegmentAboveInterval.add(1, bySegment);
    }
    metrics.feedbackCount.add(1, labels);
    metrics.feedbackAbsError.add(Math.abs(error), labels);
    metrics.feedbackSquaredError.add(error * error, labels);
    metrics.feedbackActualAboveFloor.add(actual - ACTUAL_DELAY_FLOOR, labels);
    metrics.feedbackActualSquared.add(actual * actual, labels);
    // What the answer meant for dispatch: flagged late, and the ETA buffer it would have reserved.
    const outcome = bookingOutcome(predicted, actual, business.lateThresholdMinutes);
    if (outcome.late) metrics.businessLate.add(1, labels);
    if (outcome.flagged) metrics.businessFlagged.add(1, labels);
    if (outcome.late && outcome.flagged) metrics.businessAnticipated.add(1, labels);
    if (outcome.flagged && !outcome.late) metrics.businessFalseAlarms.add(1, labels);
    metrics.businessBufferUnused.add(outcome.bufferUnused, labels);
    metrics.businessBufferShortfall.add(outcome.bufferShortfall, labels);
  }

  interface Served {
    source: string;
    modelVersion: string | null;
    predictedAt: Date;
    delay: number;
    low: number;
    high: number;
    shadow: number;
    shadowModelVersion: string | null;
    shadowModelDelay: number | null;
    features: number[];
  }

  /**
   * A shadow challenger's answer against the rules' and, where a model served, the serving model's, on the same
   * booking: the paired statistics the rollback judges, gathered before the challenger serves anyone.
   */
  function scoreShadow(prediction: Served, actual: number) {
    const { shadowModelVersion: model_version, shadowModelDelay: delay } = prediction;
    if (model_version === null || delay === null) return;
    const challengerError = Math.abs(delay - actual);
    const opponents: [ShadowOpponent, number][] = [['rules', prediction.shadow]];
    if (prediction.source === 'ml' && prediction.modelVersion !== model_version)
      opponents.push(['served_model', prediction.delay]);
    for (const [against, opponent] of opponents) {
      const opponentError = Math.abs(opponent - actual);
      metrics.shadowPairs.add(1, { model_version, against });
      metrics.shadowAbsError.add(challengerError, { model_version, against, answer: 'challenger' });
      metrics.shadowAbsError.add(opponentError, { model_version, against, answer: 'opponent' });
      const paired = challengerError - opponentError;
      metrics.shadowPairedDifferenceSquared.add(paired * paired, { model_version, against });
    }
  }

  /** A first value of a booking: into the live counters, or counted as late. */
  function scoreRecorded(prediction: Served, actual: number) {
    const model_version = prediction.modelVersion ?? 'none';
    if (now() - prediction.predictedAt.getTime() > liveHorizonMs) {
      metrics.feedbackLate.add(1, { model_version });
      return;
    }
    // Segments from the vector as served, the served delay as the reference (features/segments.ts): the same
    // bookings in a segment for the served arm and its shadow.
    const segments = segmentsOf({ vector: prediction.features, referenceDelay: prediction.delay });
    score(prediction.source as FeedbackArm, model_version, segments, prediction.delay, actual, prediction);
    if (prediction.source === 'ml') {
      score('heuristic_shadow', model_version, segments, prediction.shadow, actual);
      // The paired difference's spread: how sure the rules can be that ML loses to its shadow.
      const paired = Math.abs(prediction.delay - actual) - Math.abs(prediction.shadow - actual);
      metrics.feedbackPairedDifferenceSquared.add(paired * paired, { model_version });
    }
    scoreShadow(prediction, actual);
  }

  /**
   * One batch, in one transaction: the stored values are read and locked, each item's outcome follows from them
   * and from the items before it, then the new bookings are inserted and the corrected ones updated in one
   * statement each (the report rollups' triggers run once per statement).
   */
  async function apply(tx: Db, items: FeedbackItem[]) {
    const ids = [...new Set(items.map((i) => i.booking_id))];
    // The first prediction served for a booking is the one its feedback scores: a later post of the same id (by
    // anyone, where predictions are open) cannot replace what the error counters judge.
    const served = await tx
      .selectDistinctOn([predictions.bookingId], {
        bookingId: predictions.bookingId,
        source: predictions.source,
        modelVersion: predictions.modelVersion,
        predictedAt: predictions.predictedAt,
        delay: predictions.delayMinutes,
        low: predictions.intervalLow,
        high: predictions.intervalHigh,
        shadow: predictions.shadowHeuristicDelay,
        shadowModelVersion: predictions.shadowModelVersion,
        shadowModelDelay: predictions.shadowModelDelay,
        features: predictions.features,
      })
      .from(predictions)
      .where(inArray(predictions.bookingId, ids))
      .orderBy(predictions.bookingId, predictions.predictedAt, predictions.id);
    const servedBy = new Map(served.map((p) => [p.bookingId, p]));
    const stored = await tx
      .select({ bookingId: feedback.bookingId, actual: feedback.actualDelayMinutes })
      .from(feedback)
      .where(inArray(feedback.bookingId, ids))
      .orderBy(feedback.bookingId)
      .for('update');
    const storedValue = new Map(stored.map((f) => [f.bookingId, f.actual]));

    interface Write {
      value: number;
      observedAt: Date | null;
      revisions: number;
    }
    const inserts = new Map<string, Write>();
    const updates = new Map<string, Write>();
    const results: FeedbackResult[] = [];
    const recorded: { prediction: Served; actual: number }[] = [];
    for (const item of items) {
      const id = item.booking_id;
      const prediction = servedBy.get(id);
      if (!prediction) {
        results.push({ booking_id: id, outcome: 'unknown_booking' });
        continue;
      }
      const value = item.actual_delay_minutes;
      const observedAt = item.observed_at ? new Date(item.observed_at) : null;
      const written = inserts.get(id) ?? updates.get(id);
      const current = written ? written.value : storedValue.get(id);
      let outcome: FeedbackOutcome;
      if (current === undefined) {
        outcome = 'recorded';
        inserts.set(id, { value, observedAt, revisions: 0 });
        recorded.push({ prediction, actual: value });
      } else if (current === value) {
        outcome = 'unchanged';
      } else {
        outcome = 'corrected';
        (inserts.has(id) ? inserts : updates).set(id, {
          value,
          observedAt,
          revisions: (written?.revisions ?? 0) + 1,
        });
      }
      results.push({ booking_id: id, outcome });
    }

    const byId = (writes: Map<string, Write>) => [...writes].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    if (inserts.size > 0) {
      const inserted = await tx
        .insert(feedback)
        .values(
          byId(inserts).map(([bookingId, w]) => ({
            bookingId,
            actualDelayMinutes: w.value,
            observedAt: w.observedAt,
            revisions: w.revisions,
          })),
        )
        .onConflictDoNothing()
        .returning({ bookingId: feedback.bookingId });
      if (inserted.length < inserts.size) throw new FirstValueRace();
    }
    if (updates.size > 0) {
      const rows = byId(updates).map(
        ([bookingId, w]) =>
          sql`(${bookingId}, ${w.value}::double precision, ${w.observedAt?.toISOString() ?? null}::timestamptz, ${w.revisions}::integer)`,
      );
      await tx.execute(sql`
        update ${feedback} set
          actual_delay_minutes = v.actual, observed_at = v.observed_at, updated_at = now(),
          revisions = ${feedback.revisions} + v.revisions
        from (values ${sql.join(rows, sql`, `)}) as v(booking_id, actual, observed_at, revisions)
        where ${feedback.bookingId} = v.booking_id`);
    }
    return { results, recorded };
  }

  return {
    async submit(items: FeedbackItem[]): Promise<FeedbackResult[]> {
      let attempt = 1;
      let applied: Awaited<ReturnType<typeof apply>>;
      for (;;) {
        try {
          applied = await db.transaction((tx) => apply(tx, items));
          break;
        } catch (err) {
          // Concurrent batches of the same bookings or hours: the loser of a deadlock or of a first value is
          // rolled back whole and tried again, reading what the winner stored.
          if (attempt >= MAX_ATTEMPTS || !(err instanceof FirstValueRace || retryable(err))) throw err;
          attempt += 1;
        }
      }
      const { results, recorded } = applied;
      for (const { prediction, actual } of recorded) scoreRecorded(prediction, actual);
      for (const { booking_id, outcome } of results) {
        if (outcome === 'unknown_booking') continue;
        metrics.feedbackEvents.add(1, { outcome });
        if (outcome === 'corrected') log.info({ booking_ref: bookingRef(booking_id) }, 'feedback corrected');
      }
      return results;
    },
  };
}

export type FeedbackService = ReturnType<typeof createFeedbackService>;
