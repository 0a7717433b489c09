import { SpanKind, type Tracer } from '@opentelemetry/api';
import {
  ATTR_DB_COLLECTION_NAME,
  ATTR_DB_OPERATION_NAME,
  ATTR_DB_QUERY_SUMMARY,
  ATTR_DB_SYSTEM_NAME,
  DB_SYSTEM_NAME_VALUE_POSTGRESQL,
} from '@opentelemetry/semantic-conventions';
import type { Logger } from 'pino';
import type { predictions } from '../../db/schema.js';
import type { BookingRef } from '../privacy/booking-ref.js';
import { redactedMessage } from '../telemetry/redacted-error.js';
import type { PredictionDropReason, ServiceMetrics } from '../telemetry/service-metrics.js';
import { inSpan } from '../telemetry/spans.js';

export type PredictionRow = typeof predictions.$inferInsert;
/** The span's name, as the conventions name a database span: its query summary. */
const PREDICTION_INSERT_SUMMARY = 'INSERT predictions';

export interface PredictionLogOptions {
  /**
   * One batch insert (`Database.insertPredictions`): all rows written or none. `signal` cancels it (the drain's
   * deadline); it must then settle promptly, so that no row is both written and counted as dropped.
   */
  insert: (rows: PredictionRow[], signal: AbortSignal) => Promise<void>;
  /**
   * The pseudonym each row is stored with (booking_ref), the one traces, logs and dashboards show: computed by the
   * writer, off the request's path.
   */
  bookingRef: BookingRef;
  /**
   * postgres-js and PGlite have no OpenTelemetry instrumentation: each batch write gets its own database client
   * span (semantic conventions for database spans).
   */
  tracer?: Tracer;
  metrics: ServiceMetrics;
  logger: Logger;
  /** Rows held in memory at most; beyond it new rows are dropped and counted. */
  capacity?: number;
  batchSize?: number;
  flushIntervalMs?: number;
  /** Longest pause between attempts while the database fails. */
  maxBackoffMs?: number;
}

export interface PredictionLog {
  /** Never blocks and never throws: a full queue drops the rows and counts them. */
  enqueue(rows: PredictionRow[]): void;
  depth(): number;
  /**
   * Writes what is queued within `timeoutMs`: a write still running near the deadline is cancelled, and what is
   * left is counted as dropped (shutdown) and logged before it returns.
   */
  drain(timeoutMs: number): Promise<void>;
}

/**
 * Postgres refuses these rows for what they hold (SQLSTATE class 22, data exception; 23, integrity): another
 * try fails alike, so they are set aside. Anything else (connection lost, server down) is retried. Drizzle
 * wraps the driver's error in `cause`.
 */
function refusesRows(err: unknown): boolean {
  const code =
    (err as { code?: unknown; cause?: { code?: unknown } }).code ??
    (err as { cause?: { code?: unknown } }).cause?.code;
  return typeof code === 'string' && /^2[23]/.test(code);
}
/**
 * Predictions reach the database off the hot path: a bounded in-memory queue, written in batches by one
 * loop. While the database fails, the loop retries the same batch with growing pauses and the queue
 * absorbs new rows up to its capacity; writing resumes by itself when the database answers again.
 */
export function createPredictionLog({
  insert,
  bookingRef,
  tracer,
  metrics,
  logger,
  capacity = 20_000,
  batchSize = 500,
  flushIntervalMs = 200,
  maxBackoffMs = 5000,
}: PredictionLogOptions): PredictionLog {
  const log = logger.child({ component: 'prediction-log' });
  let queue: PredictionRow[] = [];
  let failures = 0;
  let timer: NodeJS.Timeout | undefined;
  let writing: Promise<void> | undefined;
  let closed = false;
  /** Aborted at the drain's deadline: cancels the write in flight, and no other starts. */
  const stopping = new AbortController();

  metrics.predictionLogDepth.addCallback((r) => r.observe(queue.length));
  const dropped = (n: number, reason: PredictionDropReason) =>
    metrics.predictionLogDropped.add(n, { reason });

  // Rows of the batch, from its head, that are written or set aside: a failure retries only what follows.
  let settled = 0;
  /** Writes `rows`; rows the database refuses for what they hold are halved until each is set aside alone. */
  async function insertIsolating(rows: PredictionRow[]): Promise<void> {
    try {
      await insert(rows, stopping.signal);
      settled += rows.length;
      metrics.predictionLogWritten.add(rows.length);
    } catch (err) {
      if (!refusesRows(err)) throw err;
      if (rows.length > 1) {
        const half = Math.ceil(rows.length / 2);
        await insertIsolating(rows.slice(0, half));
        await insertIsolating(rows.slice(half));
        return;
      }
      settled += 1;
      dropped(1, 'refused');
      log.error(
        { err: redactedMessage(err), booking_count: 1 },
        'the database refused a prediction; it is set aside',
      );
    }
  }

  async function writeBatch(): Promise<boolean> {
    const batch = queue.slice(0, batchSize).map((row) => ({ ...row, bookingRef: bookingRef(row.bookingId) }));
    if (batch.length === 0) return true;
    settled = 0;
    try {
      const write = () => insertIsolating(batch);
      // One statement writes the whole batch: not a batch operation in the conventions' sense (several
      // queries; db.operation.batch.size), so the rows it carries are counted apart.
      await (tracer
        ? inSpan(
            tracer,
            PREDICTION_INSERT_SUMMARY,
            {
              [ATTR_DB_SYSTEM_NAME]: DB_SYSTEM_NAME_VALUE_POSTGRESQL,
              [ATTR_DB_OPERATION_NAME]: 'INSERT',
              [ATTR_DB_COLLECTION_NAME]: 'predictions',
              [ATTR_DB_QUERY_SUMMARY]: PREDICTION_INSERT_SUMMARY,
              'delay.bookings': batch.length,
            },
            write,
            { kind: SpanKind.CLIENT },
          )
        : write());
      queue = queue.slice(settled);
      if (failures > 0) log.info({ after_failures: failures }, 'prediction log writing again');
      failures = 0;
      return true;
    } catch (err) {
      queue = queue.slice(settled);
      // Cancelled by the drain's deadline: its rows are counted there, with the rest.
      if (stopping.signal.aborted) return false;
      failures += 1;
      metrics.predictionLogWriteErrors.add(1);
      if (failures === 1) log.error({ err: redactedMessage(err) }, 'prediction log cannot write; retrying');
      return false;
    }
  }

  function schedule(delayMs: number) {
    if (closed) return;
    timer = setTimeout(() => {
      writing = (async () => {
        while (queue.length > 0 && (await writeBatch()) && queue.length >= batchSize) {
          // full batches waiting: keep writing without pausing
        }
      })().finally(() => {
        writing = undefined;
        schedule(failures > 0 ? Math.min(flushIntervalMs * 2 ** failures, maxBackoffMs) : flushIntervalMs);
      });
    }, delayMs);
    timer.unref();
  }
  schedule(flushIntervalMs);

  return {
    enqueue(rows) {
      const room = capacity - queue.length;
      if (rows.length > room) {
        dropped(rows.length - Math.max(room, 0), 'queue_full');
      }
      if (room > 0) queue.push(...rows.slice(0, room));
    },
    depth: () => queue.length,
    async drain(timeoutMs) {
      closed = true;
      clearTimeout(timer);
      // The last part of the time is left for a cancelled write to settle: the server answers a cancel in
      // milliseconds, so its rows are known to be written or not before they are counted.
      const settleMs = Math.min(1000, timeoutMs / 2);
      const cancelAt = setTimeout(() => stopping.abort(), timeoutMs - settleMs);
      let giveUp: NodeJS.Timeout | undefined;
      const deadline = new Promise<'deadline'>((resolve) => {
        giveUp = setTimeout(() => resolve('deadline'), timeoutMs);
      });
      let unsettled = false;
      try {
        if ((await Promise.race([writing, deadline])) === 'deadline') unsettled = true;
        while (!unsettled && queue.length > 0 && !stopping.signal.aborted) {
          const written = await Promise.race([writeBatch(), deadline]);
          if (written === 'deadline') unsettled = true;
          else if (!written) await Promise.race([new Promise((r) => setTimeout(r, 100)), deadline]);
        }
      } finally {
        clearTimeout(cancelAt);
        clearTimeout(giveUp);
      }
      if (queue.length > 0) {
        const left = queue.length;
        queue = [];
        dropped(left, 'shutdown');
        // A write the cancel did not settle (the server unreachable) may yet commit: its rows are counted with
        // the rest, and the line says so.
        log.error(
          { dropped: left, ...(unsettled ? { write_unsettled: true } : {}) },
          'prediction log: rows left unwritten at shutdown',
        );
      }
    },
  };
}
