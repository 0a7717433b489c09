import { sql } from 'drizzle-orm';
import {
  bigint,
  bigserial,
  boolean,
  check,
  customType,
  doublePrecision,
  index,
  integer,
  jsonb,
  numeric,
  pgTable,
  primaryKey,
  real,
  text,
  timestamp,
  unique,
} from 'drizzle-orm/pg-core';
import { BOOKING_REF_PATTERN } from '../service/privacy/booking-ref.js';

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
    /** SHADOW_MODEL_VERSION's answer for the same booking, never served; null when none scored it. */
    shadowModelVersion: text('shadow_model_version'),
    shadowModelDelay: doublePrecision('shadow_model_delay'),
    features: jsonb('features').$type<number[]>().notNull(),
    weatherSource: text('weather_source').notNull(),
    latencyMs: real('latency_ms').notNull(),
    traceId: text('trace_id'),
    /**
     * The booking's pseudonym (service/privacy/booking-ref.ts) as traces, logs and dashboards show it: what leads
     * from them to this row. Null on rows stored before migration 0004 (the key is not the database's to know).
     */
    bookingRef: text('booking_ref'),
  },
  (t) => [
    index('predictions_booking_idx').on(t.bookingId, t.predictedAt),
    index('predictions_booking_ref_idx').on(t.bookingRef),
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

/*
 * What the reports read (docs/adr/0011-report-rollups.md). The database keeps these three tables as rows arrive:
 * triggers of migration 0001 on predictions, feedback and scored_predictions. Sums are numeric, exact: a
 * correction or a purge subtracts exactly what was added.
 */

/** The prediction a booking's feedback scores: its first, as stored when the feedback arrived; and the actual. */
export const scoredPredictions = pgTable(
  'scored_predictions',
  {
    bookingId: text('booking_id').primaryKey(),
    predictionId: bigint('prediction_id', { mode: 'number' }).notNull(),
    predictedAt: timestamp('predicted_at', { withTimezone: true, mode: 'date' }).notNull(),
    source: text('source').notNull(),
    modelVersion: text('model_version'),
    delayMinutes: doublePrecision('delay_minutes').notNull(),
    shadowHeuristicDelay: doublePrecision('shadow_heuristic_delay').notNull(),
    actualDelayMinutes: doublePrecision('actual_delay_minutes').notNull(),
  },
  (t) => [
    index('scored_predictions_time_idx').on(t.predictedAt),
    index('scored_predictions_source_time_idx').on(t.source, t.predictedAt),
  ],
);

/** Predictions per UTC hour and source (re-posts included), and what the summary sums over them. */
export const predictionHours = pgTable(
  'prediction_hours',
  {
    hour: timestamp('hour', { withTimezone: true, mode: 'date' }).notNull(),
    source: text('source').notNull(),
    predictions: integer('predictions').notNull(),
    fallbacks: integer('fallbacks').notNull(),
    weatherDefault: integer('weather_default').notNull(),
    latencyMs: numeric('latency_ms').notNull(),
  },
  (t) => [primaryKey({ columns: [t.hour, t.source] })],
);

/** Sums over scored_predictions per UTC hour of the prediction, source and model version. */
export const scoredHours = pgTable(
  'scored_hours',
  {
    hour: timestamp('hour', { withTimezone: true, mode: 'date' }).notNull(),
    source: text('source').notNull(),
    modelVersion: text('model_version'),
    n: integer('n').notNull(),
    absError: numeric('abs_error').notNull(),
    squaredError: numeric('squared_error').notNull(),
    actual: numeric('actual').notNull(),
    actualSquared: numeric('actual_squared').notNull(),
    shadowAbsError: numeric('shadow_abs_error').notNull(),
    shadowSquaredError: numeric('shadow_squared_error').notNull(),
    pairedDifference: numeric('paired_difference').notNull(),
    pairedDifferenceSquared: numeric('paired_difference_squared').notNull(),
  },
  (t) => [unique('scored_hours_key').on(t.hour, t.source, t.modelVersion).nullsNotDistinct()],
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

/**
 * The audit of erasures (`npm run report -- erase`, docs/privacy.md): one row per request, the booking named by its
 * pseudonym only, with what was deleted. A request for a booking with nothing stored is recorded too, with zeros.
 */
export const erasures = pgTable(
  'erasures',
  {
    id: bigserial('id', { mode: 'number' }).primaryKey(),
    at: timestamp('at', { withTimezone: true, mode: 'date' }).notNull().default(sql`now()`),
    /** Who asked for it: `cli:<user>`. */
    actor: text('actor').notNull(),
    bookingRef: text('booking_ref').notNull(),
    predictions: integer('predictions').notNull(),
    feedback: integer('feedback').notNull(),
    /** The scored row (scored_predictions) its feedback made, taken out of the report rollups. */
    scored: integer('scored').notNull(),
  },
  (t) => [
    index('erasures_booking_ref_idx').on(t.bookingRef),
    // Never a booking id in clear: only what bookingRefs gives.
    check('erasures_booking_ref', sql`${t.bookingRef} ~ ${sql.raw(`'${BOOKING_REF_PATTERN.source}'`)}`),
  ],
);

/** Bytes as Postgres stores them (bytea): a Buffer from postgres-js, a Uint8Array from PGlite. */
const bytea = customType<{ data: Uint8Array; driverData: Uint8Array }>({ dataType: () => 'bytea' });

/**
 * The model registry (docs/adr/0013-model-registry.md): every version the service may load, its ONNX graph and its
 * card, bound for good to their digest. A retired name keeps its row without an artifact, so that it is never
 * registered again.
 */
export const modelVersions = pgTable(
  'model_versions',
  {
    version: text('version').primaryKey(),
    /** `sha256:` and the hex SHA-256 of the graph's length, the graph and the card's canonical JSON. */
    digest: text('digest'),
    card: jsonb('card').$type<Record<string, unknown>>(),
    onnx: bytea('onnx'),
    /** The card's feature schema (names and units, in order), checked against the service's at registration. */
    featureSchema: jsonb('feature_schema').$type<{ name: string; unit: string }[]>(),
    retired: boolean('retired').notNull().default(false),
    note: text('note'),
    registeredAt: timestamp('registered_at', { withTimezone: true, mode: 'date' })
      .notNull()
      .default(sql`now()`),
    /** Who or what registered it: `cli:<user>`, `seed:<folder>`, `migration`. */
    registeredBy: text('registered_by').notNull(),
  },
  (t) => [
    check(
      'model_versions_artifact',
      sql`${t.retired} or (${t.digest} is not null and ${t.card} is not null and ${t.onnx} is not null and ${t.featureSchema} is not null)`,
    ),
    check('model_versions_digest', sql`${t.digest} is null or ${t.digest} ~ '^sha256:[0-9a-f]{64}$'`),
  ],
);
