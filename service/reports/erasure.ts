import { eq } from 'drizzle-orm';
import { erasures, feedback, predictions, scoredPredictions } from '../../db/schema.js';
import type { BookingRef } from '../privacy/booking-ref.js';
import type { Db } from '../storage/database.js';

export interface Erasure {
  /** The erasures row that records it. */
  id: number;
  bookingRef: string;
  predictions: number;
  feedback: number;
  /** The booking's scored row (scored_predictions), taken out of the report rollups with it. */
  scored: number;
}

/**
 * Deletes everything stored for one booking (docs/privacy.md) and records it in `erasures` under the booking's
 * pseudonym only, in one transaction: all of it or none. The rollup triggers of migration 0001 subtract the deleted
 * rows from prediction_hours and scored_hours, so the reports read as if the booking had never been served. A booking
 * with nothing stored is recorded too, with zeros: the audit shows every request answered, and what it found.
 */
export function eraseBooking(
  db: Db,
  { bookingId, bookingRef, actor }: { bookingId: string; bookingRef: BookingRef; actor: string },
): Promise<Erasure> {
  return db.transaction(async (tx) => {
    // The scored row first, so that it is counted: deleting the feedback or the predictions would delete it by trigger.
    const scored = await tx
      .delete(scoredPredictions)
      .where(eq(scoredPredictions.bookingId, bookingId))
      .returning({ id: scoredPredictions.predictionId });
    const feedbackRows = await tx
      .delete(feedback)
      .where(eq(feedback.bookingId, bookingId))
      .returning({ id: feedback.bookingId });
    const predictionRows = await tx
      .delete(predictions)
      .where(eq(predictions.bookingId, bookingId))
      .returning({ id: predictions.id });
    const counts = {
      bookingRef: bookingRef(bookingId),
      predictions: predictionRows.length,
      feedback: feedbackRows.length,
      scored: scored.length,
    };
    const [row] = await tx
      .insert(erasures)
      .values({ actor, ...counts })
      .returning({ id: erasures.id });
    return { id: row?.id as number, ...counts };
  });
}
