import { sql } from 'drizzle-orm';
import {
  bigserial,
  doublePrecision,
  index,
  integer,
  jsonb,
  pgTable,
  real,
  text,
  timestamp,
} from 'drizzle-orm/pg-core';

/** Every prediction served, with what it was made from: the feature vector exactly as the model saw it. */
export const predictions = pgTable(
  'predictions',
  {
    id: bigserial('id', { mode: 'number' }).primaryKey(),
    bookingId: text('booking_id').notNull(),
    predictedAt: timestamp('predicted_at', { withTimezone: true, mode: 'date' }).notNull(),
    endpoint: text('endpoint').notNull(),
    source: text('source').notNull(),
    variant: text('variant').notNull(),
    modelVersion: text('model_version'),
    fallbackReason: text('fallback_reason'),
    delayMinutes: doublePrecision('delay_minutes').notNull(),
    intervalLow: doublePrecision('interval_low').notNull(),
    intervalHigh: doublePrecision('interval_high').notNull(),
    /** The heuristic's answer for the same booking, computed on every request (the A/B pair). */
    shadowHeuristicDelay: doublePrecision('shadow_heuristic_delay').notNull(),
    features: jsonb('features').$type<number[]>().notNull(),
    weatherSource: text('weather_source').notNull(),
    latencyMs: real('latency_ms').notNull(),
    traceId: text('trace_id'),
  },
  (t) => [
    index('predictions_booking_idx').on(t.bookingId, t.predictedAt),
    index('predictions_time_idx').on(t.predictedAt),
    index('predictions_source_time_idx').on(t.source, t.predictedAt),
  ],
);

/** The actual delay of a booking, one row per booking; a correction replaces the value. */
export const feedback = pgTable(
  'feedback',
  {
    bookingId: text('booking_id').primaryKey(),
    actualDelayMinutes: doublePrecision('actual_delay_minutes').notNull(),
    observedAt: timestamp('observed_at', { withTimezone: true, mode: 'date' }),
    receivedAt: timestamp('received_at', { withTimezone: true, mode: 'date' }).notNull().default(sql`now()`),
    updatedAt: timestamp('updated_at', { withTimezone: true, mode: 'date' }).notNull().default(sql`now()`),
    revisions: integer('revisions').notNull().default(0),
  },
  (t) => [index('feedback_received_idx').on(t.receivedAt)],
);

/** The audit trail of rollout changes: who or what changed the delay-model flag, when, and why. */
export const flagChanges = pgTable(
  'flag_changes',
  {
    id: bigserial('id', { mode: 'number' }).primaryKey(),
    at: timestamp('at', { withTimezone: true, mode: 'date' }).notNull().default(sql`now()`),
    actor: text('actor').notNull(),
    action: text('action').notNull(),
    flag: text('flag').notNull(),
    previousWeight: real('previous_weight'),
    newWeight: real('new_weight'),
    modelVersion: text('model_version'),
    reason: text('reason'),
    alertName: text('alert_name'),
    fingerprint: text('fingerprint'),
    labels: jsonb('labels').$type<Record<string, string>>(),
  },
  (t) => [index('flag_changes_at_idx').on(t.at), index('flag_changes_fingerprint_idx').on(t.fingerprint)],
);
