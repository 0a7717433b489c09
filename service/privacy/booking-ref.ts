import { createHmac, randomBytes } from 'node:crypto';

/**
 * A booking's pseudonym outside the prediction log (docs/privacy.md): traces, logs, dashboards and the erasure
 * audit carry `bk_` and 20 hex digits of HMAC-SHA256(BOOKING_REF_KEY, booking id). Without the key the id cannot
 * be recovered or guessed from a list of ids; with database access, the stored `booking_ref` (or the trace id) leads
 * to the row.
 */
export type BookingRef = (bookingId: string) => string;

export const BOOKING_REF_PATTERN = /^bk_[0-9a-f]{20}$/;

export function bookingRefs(key: string): BookingRef {
  if (key.length < 16) throw new Error('a booking ref key holds at least 16 characters');
  return (bookingId) => `bk_${createHmac('sha256', key).update(bookingId).digest('hex').slice(0, 20)}`;
}

/** The key of a process started without BOOKING_REF_KEY: refs stay pseudonymous, but differ per process. */
export const randomBookingRefKey = (): string => randomBytes(32).toString('hex');
