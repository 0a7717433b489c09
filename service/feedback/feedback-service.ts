import { and, eq, inArray, ne, sql } from 'drizzle-orm';
import type { Logger } from 'pino';
import { feedback, predictions } from '../../db/schema.js';
import { type SegmentName, segmentsOf } from '../features/segments.js';
import type { Db } from '../storage/database.js';
import type { FeedbackArm, FeedbackOutcome, ServiceMetrics } from '../telemetry/service-metrics.js';

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
 * Actual delays, one per booking. The first value of a booking is scored into the error counters (per arm:
 * the source that served it, and the heuristic's shadow answer for ML-served bookings); a repeat changes
 * nothing; a correction replaces the stored value, which the reports use, and is counted as a correction,
 * so each booking weighs once in the counters.
 */
export function createFeedbackService({
  db,
  metrics,
  logger,
}: {
  db: Db;
  metrics: ServiceMetrics;
  logger: Logger;
}) {
  const log = logger.child({ component: 'feedback' });

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
  }

  return {
    async submit(items: FeedbackItem[]): Promise<FeedbackResult[]> {
      const ids = [...new Set(items.map((i) => i.booking_id))];
      // The first prediction served for a booking is the one its feedback scores: a later post of the same id
      // (by anyone, where predictions are open) cannot replace what the error counters judge.
      const served = await db
        .selectDistinctOn([predictions.bookingId], {
          bookingId: predictions.bookingId,
          source: predictions.source,
          modelVersion: predictions.modelVersion,
          delay: predictions.delayMinutes,
          low: predictions.intervalLow,
          high: predictions.intervalHigh,
          shadow: predictions.shadowHeuristicDelay,
          features: predictions.features,
        })
        .from(predictions)
        .where(inArray(predictions.bookingId, ids))
        .orderBy(predictions.bookingId, predictions.predictedAt, predictions.id);
      const servedBy = new Map(served.map((p) => [p.bookingId, p]));

      const results: FeedbackResult[] = [];
      for (const item of items) {
        const prediction = servedBy.get(item.booking_id);
        if (!prediction) {
          results.push({ booking_id: item.booking_id, outcome: 'unknown_booking' });
          continue;
        }
        const observedAt = item.observed_at ? new Date(item.observed_at) : null;
        const inserted = await db
          .insert(feedback)
          .values({ bookingId: item.booking_id, actualDelayMinutes: item.actual_delay_minutes, observedAt })
          .onConflictDoNothing()
          .returning({ bookingId: feedback.bookingId });
        let outcome: FeedbackOutcome;
        if (inserted.length === 1) {
          outcome = 'recorded';
          const actual = item.actual_delay_minutes;
          // Segments from the vector as served, the served delay as the reference (features/segments.ts): the
          // same bookings in a segment for the served arm and its shadow.
          const segments = segmentsOf({ vector: prediction.features, referenceDelay: prediction.delay });
          score(
            prediction.source as FeedbackArm,
            prediction.modelVersion ?? 'none',
            segments,
            prediction.delay,
            actual,
            prediction,
          );
          if (prediction.source === 'ml') {
            const model_version = prediction.modelVersion ?? 'none';
            score('heuristic_shadow', model_version, segments, prediction.shadow, actual);
            // The paired difference's spread: how sure the rules can be that ML loses to its shadow.
            const paired = Math.abs(prediction.delay - actual) - Math.abs(prediction.shadow - actual);
            metrics.feedbackPairedDifferenceSquared.add(paired * paired, { model_version });
          }
        } else {
          const updated = await db
            .update(feedback)
            .set({
              actualDelayMinutes: item.actual_delay_minutes,
              observedAt,
              updatedAt: new Date(),
              revisions: sql`${feedback.revisions} + 1`,
            })
            .where(
              and(
                eq(feedback.bookingId, item.booking_id),
                ne(feedback.actualDelayMinutes, item.actual_delay_minutes),
              ),
            )
            .returning({ bookingId: feedback.bookingId });
          outcome = updated.length === 1 ? 'corrected' : 'unchanged';
          if (outcome === 'corrected') log.info({ booking_count: 1 }, 'feedback corrected');
        }
        metrics.feedbackEvents.add(1, { outcome });
        results.push({ booking_id: item.booking_id, outcome });
      }
      return results;
    },
  };
}

export type FeedbackService = ReturnType<typeof createFeedbackService>;
