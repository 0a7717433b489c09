import { connect, createServer, type Server, type Socket } from 'node:net';
import { SpanKind } from '@opentelemetry/api';
import {
  BasicTracerProvider,
  InMemorySpanExporter,
  SimpleSpanProcessor,
} from '@opentelemetry/sdk-trace-base';
import { sql } from 'drizzle-orm';
import pino from 'pino';
import postgres from 'postgres';
import { afterEach, describe, expect, it } from 'vitest';
import { feedback, predictions } from '../../db/schema.js';
import { FEATURE_NAMES } from '../features/booking-features.js';
import { createFeedbackService } from '../feedback/feedback-service.js';
import { bookingRefs } from '../privacy/booking-ref.js';
import { createReports, pairedComparison } from '../reports/reports.js';
import { exportServedRows } from '../retraining/retraining.js';
import {
  databaseEngines,
  freshPostgres,
  postgresAvailable,
  predictionRow as row,
} from '../test-support/databases.js';
import {
  booking,
  eventually,
  type FlagsSpec,
  postJson,
  silentLogger,
  tempDir,
  testMetrics,
} from '../test-support/harness.js';
import { freePort } from '../test-support/process.js';
import { testService } from '../test-support/service.js';
import { type Database, DataDirInUseError, openDatabase } from './database.js';
import { createPredictionLog } from './prediction-log.js';

const bookingRef = bookingRefs('storage-test-booking-ref-key');

const hasPostgres = await postgresAvailable();
const open: { close(): Promise<void> }[] = [];
afterEach(async () => {
  await Promise.all(
    open
      .splice(0)
      .reverse()
      .map((x) => x.close()),
  );
});

async function count(database: Database, table: typeof predictions | typeof feedback) {
  const [r] = await database.db.select({ n: sql<number>`count(*)::int` }).from(table);
  return Number(r?.n);
}

const engines = databaseEngines(hasPostgres);

describe.each(engines)('storage on %s', (name, fresh, available) => {
  async function database() {
    const d = await fresh();
    open.push(d);
    return d;
  }
  /** The whole service (composition root) on this engine: its own PGlite, or a fresh Postgres database. */
  async function service(flags: FlagsSpec) {
    const env: { DATABASE_URL?: string } = {};
    if (name === 'Postgres') {
      const postgres = await freshPostgres();
      open.push(postgres);
      env.DATABASE_URL = postgres.url;
    }
    const t = await testService({ flags, env });
    open.push(t);
    return t;
  }

  it.skipIf(!available)(
    'stores every column of a prediction as given, nulls and the feature vector included',
    async () => {
      const d = await database();
      const at = new Date('2026-11-25T08:15:00.123Z');
      // Array-literal metacharacters, quotes, backslash, tab, newline and non-ASCII: stored as given.
      const nastyId = 'col-3 "q" \\ {a,b} NULL é\t\n';
      const given = [
        row('col-1', {
          predictedAt: at,
          traceId: 'ab'.repeat(16),
          modelVersion: 'gbt-v2',
          source: 'ml',
          shadowModelVersion: 'gbt-v3',
          shadowModelDelay: 7.25,
          bookingRef: bookingRef('col-1'),
        }),
        row('col-2', { predictedAt: at, features: [1.5, -2, 0, 1e-7, 12, 0, 0, 0, 0, 0, 0, 0, 10] }),
        row(nastyId, { predictedAt: at, delayMinutes: 0.1 + 0.2, fallbackReason: 'model_timeout' }),
      ];
      await d.insertPredictions(given);
      const stored = await d.db.select().from(predictions).orderBy(predictions.bookingId);
      expect(stored.map(({ id: _id, ...rest }) => rest)).toEqual(given);
    },
  );

  it.skipIf(!available)(
    'writes queued predictions in batches, off the caller, each batch a database span',
    async () => {
      const d = await database();
      const m = testMetrics();
      const spans = new InMemorySpanExporter();
      const tracer = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(spans)] }).getTracer(
        'test',
      );
      const log = createPredictionLog({
        insert: d.insertPredictions,
        bookingRef,
        tracer,
        metrics: m.metrics,
        logger: silentLogger,
        batchSize: 200,
        flushIntervalMs: 20,
      });
      log.enqueue(Array.from({ length: 1200 }, (_, i) => row(`b-${i}`)));
      await eventually(
        () => count(d, predictions),
        (n) => n === 1200,
      );
      expect(await count(d, predictions)).toBe(1200);
      expect(await m.value('delay.prediction_log.written')).toBe(1200);
      const [stored] = await d.db.select().from(predictions).limit(1);
      expect(stored?.features).toHaveLength(FEATURE_NAMES.length);
      // Each row stored with the pseudonym traces and dashboards show for it.
      const refs = await d.db
        .select({ id: predictions.bookingId, ref: predictions.bookingRef })
        .from(predictions);
      expect(refs.filter((r) => r.ref !== bookingRef(r.id))).toEqual([]);
      const inserts = spans.getFinishedSpans().filter((s) => s.name === 'INSERT predictions');
      expect(inserts.reduce((n, s) => n + Number(s.attributes['delay.bookings']), 0)).toBe(1200);
      // A client span with the database conventions' attributes (postgres-js has no instrumentation).
      expect(inserts[0]?.kind).toBe(SpanKind.CLIENT);
      expect(inserts[0]?.attributes).toMatchObject({
        'db.system.name': 'postgresql',
        'db.operation.name': 'INSERT',
        'db.collection.name': 'predictions',
        'db.query.summary': 'INSERT predictions',
      });
      await log.drain(1000);
    },
  );

  it.skipIf(!available)(
    'sets aside, counts and logs a row the database refuses, and writes the rest of its batch and the next',
    async () => {
      const d = await database();
      const m = testMetrics();
      const lines: string[] = [];
      const log = createPredictionLog({
        insert: d.insertPredictions,
        bookingRef,
        metrics: m.metrics,
        logger: pino({ level: 'error' }, { write: (line: string) => lines.push(line) }),
        batchSize: 50,
        flushIntervalMs: 10,
      });
      // NUL is refused by Postgres in text (SQLSTATE 22021) and by PGlite alike; the API refuses such ids too.
      log.enqueue(Array.from({ length: 40 }, (_, i) => row(i === 7 ? 'bad-\u0000-id' : `ok-${i}`)));
      log.enqueue(Array.from({ length: 40 }, (_, i) => row(`later-${i}`)));
      await eventually(
        () => count(d, predictions),
        (n) => n === 79,
      );
      expect(log.depth()).toBe(0);
      expect(await m.value('delay.prediction_log.written')).toBe(79);
      expect(await m.value('delay.prediction_log.dropped', { reason: 'refused' })).toBe(1);
      expect(await m.value('delay.prediction_log.write_errors')).toBe(0);
      expect(lines.filter((l) => l.includes('the database refused a prediction'))).toHaveLength(1);
      await log.drain(1000);
    },
  );

  it.skipIf(!available)(
    'scores the first prediction of a booking: a later post of its id with absurd inputs changes nothing',
    async () => {
      const t = await service({ mlWeight: 0 });
      const d = t.database;
      {
        const first = await (
          await postJson(t.app, '/v1/predictions', booking({ booking_id: 'victim' }))
        ).json();
        const spoof = booking({ booking_id: 'victim', distance_km: 999, driver_active_bookings: 50 });
        const second = await (await postJson(t.app, '/v1/predictions', spoof)).json();
        expect(second.delay_minutes).toBeGreaterThan(first.delay_minutes + 20);
        await eventually(
          () => count(d, predictions),
          (n) => n === 2,
        );
        const res = await postJson(t.app, '/v1/feedback', {
          booking_id: 'victim',
          actual_delay_minutes: first.delay_minutes,
        });
        expect(await res.json()).toMatchObject({ outcome: 'recorded' });
        expect(await t.metricValue('delay.feedback.absolute_error', { arm: 'heuristic' })).toBeCloseTo(0, 6);
      }
    },
  );

  it.skipIf(!available)('drops and counts what does not fit in a full queue', async () => {
    const d = await database();
    const m = testMetrics();
    const log = createPredictionLog({
      insert: d.insertPredictions,
      bookingRef,
      metrics: m.metrics,
      logger: silentLogger,
      capacity: 10,
      flushIntervalMs: 60_000,
    });
    log.enqueue(Array.from({ length: 25 }, (_, i) => row(`b-${i}`)));
    expect(log.depth()).toBe(10);
    expect(await m.value('delay.prediction_log.dropped', { reason: 'queue_full' })).toBe(15);
    await log.drain(2000);
    expect(await count(d, predictions)).toBe(10);
  });

  it.skipIf(!available)(
    'feedback: recorded once, repeats unchanged, corrections replace, unknown bookings touch nothing',
    async () => {
      const d = await database();
      const m = testMetrics();
      await d.db.insert(predictions).values([
        row('served-by-ml', {
          source: 'ml',
          variant: 'gbt-v2',
          modelVersion: 'gbt-v2',
          delayMinutes: 6,
          shadowHeuristicDelay: 9,
        }),
        row('served-by-rules', { delayMinutes: 4 }),
      ]);
      const service = createFeedbackService({ db: d.db, metrics: m.metrics, logger: silentLogger });

      expect(await service.submit([{ booking_id: 'nobody', actual_delay_minutes: 3 }])).toEqual([
        { booking_id: 'nobody', outcome: 'unknown_booking' },
      ]);
      expect(await m.value('delay.feedback.scored')).toBe(0);
      expect(await count(d, feedback)).toBe(0);

      const first = await service.submit([
        { booking_id: 'served-by-ml', actual_delay_minutes: 7 },
        { booking_id: 'served-by-rules', actual_delay_minutes: 1, observed_at: '2026-11-25T09:00:00+01:00' },
      ]);
      expect(first.map((r) => r.outcome)).toEqual(['recorded', 'recorded']);
      expect(await m.value('delay.feedback.absolute_error', { arm: 'ml', model_version: 'gbt-v2' })).toBe(1);
      expect(
        await m.value('delay.feedback.absolute_error', { arm: 'heuristic_shadow', model_version: 'gbt-v2' }),
      ).toBe(2);
      expect(
        await m.value('delay.feedback.absolute_error', { arm: 'heuristic', model_version: 'none' }),
      ).toBe(3);
      // The pair: |6 - 7| - |9 - 7| = -1, squared.
      expect(await m.value('delay.feedback.paired_difference_squared', { model_version: 'gbt-v2' })).toBe(1);
      expect(await m.value('delay.feedback.actual_above_floor', { arm: 'ml' })).toBe(67);
      // Both rows predicted the interval [3, 8]: 7 falls inside, 1 does not.
      expect(await m.value('delay.feedback.interval_hits', { arm: 'ml' })).toBe(1);
      expect(await m.value('delay.feedback.interval_hits', { arm: 'heuristic' })).toBe(0);

      expect(await service.submit([{ booking_id: 'served-by-ml', actual_delay_minutes: 7 }])).toEqual([
        { booking_id: 'served-by-ml', outcome: 'unchanged' },
      ]);
      expect(await service.submit([{ booking_id: 'served-by-ml', actual_delay_minutes: 10 }])).toEqual([
        { booking_id: 'served-by-ml', outcome: 'corrected' },
      ]);
      const [stored] = await d.db.select().from(feedback).where(sql`${feedback.bookingId} = 'served-by-ml'`);
      expect(stored).toMatchObject({ actualDelayMinutes: 10, revisions: 1 });
      expect(await m.value('delay.feedback.scored', { arm: 'ml' })).toBe(1);
      expect(await m.value('delay.feedback.events', { outcome: 'corrected' })).toBe(1);
      expect(await m.value('delay.feedback.events', { outcome: 'unchanged' })).toBe(1);
    },
  );

  it.skipIf(!available)(
    'A/B report: per-arm metrics, and a paired verdict on a known difference',
    async () => {
      const d = await database();
      // 200 ML-served bookings: ML misses by about 1 min, the heuristic's shadow by about 3.
      const rows = Array.from({ length: 200 }, (_, i) => {
        const wobble = ((i * 37) % 11) / 10 - 0.5;
        return row(`ab-${i}`, {
          source: 'ml',
          variant: 'gbt-v2',
          modelVersion: 'gbt-v2',
          delayMinutes: 10 + 1 + wobble,
          shadowHeuristicDelay: 10 - 3 + wobble,
        });
      });
      await d.db.insert(predictions).values([...rows, row('rules-0', { delayMinutes: 2 })]);
      await d.db
        .insert(feedback)
        .values([
          ...rows.map((r) => ({ bookingId: r.bookingId, actualDelayMinutes: 10 })),
          { bookingId: 'rules-0', actualDelayMinutes: 4 },
        ]);
      const report = await createReports(d.db).abReport();
      expect(report.arms.ml.n).toBe(200);
      expect(report.arms.ml.mae).toBeCloseTo(1.03, 1);
      expect(report.arms.heuristic_shadow_on_ml.mae).toBeCloseTo(2.98, 1);
      expect(report.arms.heuristic).toMatchObject({ n: 1, mae: 2 });
      expect(report.ml_by_model_version['gbt-v2']?.n).toBe(200);
      expect(report.paired.verdict).toBe('ml_better');
      const [low, high] = report.paired.ci95 as [number, number];
      expect(low).toBeLessThan(-1.8);
      expect(high).toBeLessThan(0);
    },
  );

  it.skipIf(!available)(
    'reports and the retraining export score the first prediction of a booking, never a later re-post',
    async () => {
      const d = await database();
      const at = (s: number) => new Date(Date.now() - 60_000 + s * 1000);
      const honest = FEATURE_NAMES.map((_, i) => i + 1);
      await d.db.insert(predictions).values([
        row('reposted', { predictedAt: at(0), delayMinutes: 5, shadowHeuristicDelay: 4, features: honest }),
        row('reposted', {
          predictedAt: at(10),
          delayMinutes: 900,
          shadowHeuristicDelay: 900,
          features: honest.map(() => 999),
        }),
      ]);
      await d.db.insert(feedback).values({ bookingId: 'reposted', actualDelayMinutes: 6 });
      const reports = createReports(d.db);
      const ab = await reports.abReport();
      expect(ab.arms.heuristic).toMatchObject({ n: 1, mae: 1 });
      const [today] = (await reports.daily(1)) as {
        predictions: number;
        with_feedback: number;
        mae_heuristic: number;
      }[];
      expect(today).toMatchObject({ predictions: 2, with_feedback: 1, mae_heuristic: 1 });
      const { rows } = await exportServedRows(d.db, { from: at(-10), to: at(60) }, 100);
      expect(rows).toHaveLength(1);
      expect(rows[0]).toMatchObject({ features: honest, heuristic: 4, actual: 6 });
    },
  );

  it.skipIf(!available)('purges predictions and feedback older than the retention', async () => {
    const d = await database();
    const old = new Date(Date.now() - 100 * 86_400_000);
    await d.db.insert(predictions).values([row('old', { predictedAt: old }), row('new')]);
    await d.db.insert(feedback).values([
      { bookingId: 'old', actualDelayMinutes: 1, receivedAt: old },
      { bookingId: 'new', actualDelayMinutes: 1 },
    ]);
    expect(await createReports(d.db).purge(90)).toEqual({ predictions: 1, feedback: 1 });
    expect(await count(d, predictions)).toBe(1);
  });

  it.skipIf(!available)(
    'serves feedback and monitoring over HTTP, with validated, bounded parameters',
    async () => {
      const t = await service({ mlWeight: 0 });
      const d = t.database;
      await postJson(t.app, '/v1/predictions/batch', {
        bookings: [booking({ booking_id: 'h-1' }), booking({ booking_id: 'h-2' })],
      });
      await eventually(
        () => count(d, predictions),
        (n) => n === 2,
      );

      const recorded = await postJson(t.app, '/v1/feedback', { booking_id: 'h-1', actual_delay_minutes: 30 });
      expect(await recorded.json()).toEqual({ booking_id: 'h-1', outcome: 'recorded' });
      const unknown = await postJson(t.app, '/v1/feedback', { booking_id: 'h-9', actual_delay_minutes: 3 });
      expect(unknown.status).toBe(404);
      expect((await unknown.json()).type).toBe('/problems/unknown-booking');
      const batch = await postJson(t.app, '/v1/feedback/batch', {
        feedback: [
          { booking_id: 'h-2', actual_delay_minutes: 2 },
          { booking_id: 'h-9', actual_delay_minutes: 2 },
        ],
      });
      expect((await batch.json()).results.map((r: { outcome: string }) => r.outcome)).toEqual([
        'recorded',
        'unknown_booking',
      ]);
      for (const bad of [-61, 1441, 'late', null]) {
        expect(
          (await postJson(t.app, '/v1/feedback', { booking_id: 'h-1', actual_delay_minutes: bad })).status,
        ).toBe(400);
      }

      const latest = await (await t.app.request('/v1/monitoring/predictions?limit=1')).json();
      expect(latest.predictions).toHaveLength(1);
      // h-1 is off by about 22 minutes, h-2 by about 6.
      const anomalies = await (await t.app.request('/v1/monitoring/anomalies?threshold_mae=15')).json();
      expect(anomalies.anomalies.map((a: { booking_id: string }) => a.booking_id)).toEqual(['h-1']);
      const daily = await (await t.app.request('/v1/monitoring/daily?days=7')).json();
      expect(daily.days[0]).toMatchObject({ predictions: 2, with_feedback: 2 });
      const summary = await (await t.app.request('/v1/monitoring/summary')).json();
      expect(summary).toMatchObject({ predictions: 2, ml: 0 });
      const ab = await (await t.app.request('/v1/ab-report')).json();
      expect(ab.arms.heuristic.n).toBe(2);
      for (const path of [
        '/v1/monitoring/predictions?limit=501',
        '/v1/monitoring/daily?days=0',
        '/v1/monitoring/anomalies?threshold_mae=-1',
        '/v1/ab-report?days=x',
      ]) {
        expect((await t.app.request(path)).status, path).toBe(400);
      }
    },
  );
});

/** A TCP proxy in front of Postgres that the test can cut and restore: a real outage, a real recovery. */
async function cuttableProxy(targetPort: number) {
  const port = await freePort();
  const sockets = new Set<Socket>();
  let server: Server | undefined;
  const up = () =>
    new Promise<void>((resolve) => {
      if (server?.listening) return resolve();
      server = createServer((client) => {
        const upstream = connect(targetPort, '127.0.0.1');
        for (const s of [client, upstream]) {
          sockets.add(s);
          s.on('error', () => undefined);
          s.on('close', () => sockets.delete(s));
        }
        client.pipe(upstream).pipe(client);
      });
      server.listen(port, '127.0.0.1', () => resolve());
    });
  const down = () =>
    new Promise<void>((resolve) => {
      for (const s of sockets) s.destroy();
      server?.close(() => resolve());
    });
  await up();
  return { port, up, down };
}

describe.skipIf(!hasPostgres)('Postgres outage', () => {
  it('keeps predictions queued and counted while the database is down, and writes them when it is back', async () => {
    const proxy = await cuttableProxy(5432);
    const d = await freshPostgres((url) => {
      url.port = String(proxy.port);
      return url;
    });
    open.push({
      close: async () => {
        await proxy.up().catch(() => undefined);
        await d.close();
      },
    });
    const m = testMetrics();
    const log = createPredictionLog({
      insert: d.insertPredictions,
      bookingRef,
      metrics: m.metrics,
      logger: silentLogger,
      flushIntervalMs: 20,
      maxBackoffMs: 200,
    });
    log.enqueue([row('before')]);
    await eventually(
      () => count(d, predictions),
      (n) => n === 1,
    );

    await proxy.down();
    log.enqueue(Array.from({ length: 50 }, (_, i) => row(`during-${i}`)));
    await eventually(
      () => m.value('delay.prediction_log.write_errors'),
      (n) => n >= 2,
    );
    expect(log.depth()).toBe(50);

    await proxy.up();
    await eventually(
      () => log.depth(),
      (n) => n === 0,
      15_000,
    );
    expect(await count(d, predictions)).toBe(51);
    expect(await m.value('delay.prediction_log.dropped')).toBe(0);
    await log.drain(1000);
  }, 30_000);
});

describe.skipIf(!hasPostgres)('feedback batches on Postgres: all or nothing', () => {
  async function withPredictions(ids: string[]) {
    const d = await freshPostgres();
    open.push(d);
    await d.db.insert(predictions).values(ids.map((id) => row(id)));
    return d;
  }

  it('refuses a timestamp Postgres cannot store with a 400 naming the item; nothing of the batch is stored', async () => {
    const postgres = await freshPostgres();
    open.push(postgres);
    const t = await testService({ flags: { mlWeight: 0 }, env: { DATABASE_URL: postgres.url } });
    open.push(t);
    await postJson(t.app, '/v1/predictions/batch', {
      bookings: ['a', 'b', 'c'].map((booking_id) => booking({ booking_id })),
    });
    await eventually(
      () => count(t.database, predictions),
      (n) => n === 3,
    );
    for (const observed_at of ['0000-01-01T00:00:00Z', '9999-12-31T23:00:00-05:00']) {
      const res = await postJson(t.app, '/v1/feedback/batch', {
        feedback: [
          { booking_id: 'a', actual_delay_minutes: 3 },
          { booking_id: 'b', actual_delay_minutes: 4 },
          { booking_id: 'c', actual_delay_minutes: 5, observed_at },
        ],
      });
      expect(res.status).toBe(400);
      expect((await res.json()).errors.map((e: { pointer: string }) => e.pointer)).toEqual([
        '/feedback/2/observed_at',
      ]);
    }
    expect(await count(t.database, feedback)).toBe(0);
    expect(await t.metricValue('delay.feedback.scored')).toBe(0);
    // The same instants the API accepts are stored as sent.
    const ok = await postJson(t.app, '/v1/feedback', {
      booking_id: 'a',
      actual_delay_minutes: 3,
      observed_at: '9999-12-31t18:59:59-05:00',
    });
    expect(ok.status).toBe(200);
    const [stored] = await t.database.db.select().from(feedback);
    expect(stored?.observedAt?.toISOString()).toBe('9999-12-31T23:59:59.000Z');
  }, 60_000);

  it('rolls the whole batch back when the database refuses one item, and scores none of it', async () => {
    const d = await withPredictions(['first', 'second', 'third']);
    const m = testMetrics();
    const service = createFeedbackService({ db: d.db, metrics: m.metrics, logger: silentLogger });
    // Past the API's validation (a caller of the service itself): Postgres refuses year 0.
    await expect(
      service.submit([
        { booking_id: 'first', actual_delay_minutes: 3 },
        { booking_id: 'second', actual_delay_minutes: 4 },
        { booking_id: 'third', actual_delay_minutes: 5, observed_at: '0000-01-01T00:00:00Z' },
      ]),
    ).rejects.toThrow();
    expect(await count(d, feedback)).toBe(0);
    expect(await m.value('delay.feedback.scored')).toBe(0);
    expect(await m.value('delay.feedback.events')).toBe(0);

    // The same batch, valid: every item recorded and scored once.
    const results = await service.submit([
      { booking_id: 'first', actual_delay_minutes: 3 },
      { booking_id: 'second', actual_delay_minutes: 4 },
      { booking_id: 'third', actual_delay_minutes: 5 },
    ]);
    expect(results.map((r) => r.outcome)).toEqual(['recorded', 'recorded', 'recorded']);
    expect(await count(d, feedback)).toBe(3);
    expect(await m.value('delay.feedback.scored')).toBe(3);
  });

  it('answers concurrent batches of the same bookings, in opposite orders and over many hours, each booking scored once', async () => {
    const d = await freshPostgres();
    open.push(d);
    const ids = Array.from({ length: 120 }, (_, i) => `c-${String(i).padStart(3, '0')}`);
    // Predictions over 12 hours: the report rollups' triggers lock each batch's hours.
    await d.db
      .insert(predictions)
      .values(ids.map((id, i) => row(id, { predictedAt: new Date(Date.now() - (i % 12) * 3600_000) })));
    const m = testMetrics();
    const service = createFeedbackService({ db: d.db, metrics: m.metrics, logger: silentLogger });
    const batch = (order: string[], value: number) =>
      service.submit(order.map((booking_id) => ({ booking_id, actual_delay_minutes: value })));
    const answers = await Promise.all([
      batch(ids, 5),
      batch([...ids].reverse(), 6),
      batch(
        ids.filter((_, i) => i % 2 === 0),
        5,
      ),
      batch(
        [...ids].reverse().filter((_, i) => i % 3 === 0),
        7,
      ),
    ]);
    const recorded = answers.flat().filter((r) => r.outcome === 'recorded');
    expect(recorded.map((r) => r.booking_id).sort()).toEqual(ids);
    expect(await count(d, feedback)).toBe(120);
    expect(await m.value('delay.feedback.scored')).toBe(120);
    expect(await m.value('delay.feedback.events', { outcome: 'recorded' })).toBe(120);
  }, 60_000);
});

describe.skipIf(!hasPostgres)('Postgres table locked by another session', () => {
  /** A transaction of another session holding `lock table predictions` until `release()`. */
  async function lockPredictions(url: string) {
    const locker = postgres(url, { max: 1, onnotice: () => {} });
    let release: () => void = () => undefined;
    const held = new Promise<void>((r) => {
      release = r;
    });
    let locked: () => void = () => undefined;
    const taken = new Promise<void>((r) => {
      locked = r;
    });
    const transaction = locker
      .begin(async (sql) => {
        await sql`lock table predictions in access exclusive mode`;
        locked();
        await held;
      })
      .catch(() => undefined);
    await taken;
    const end = async () => {
      release();
      await transaction;
      await locker.end({ timeout: 1 });
    };
    open.push({ close: end });
    return { release: end };
  }

  it('a write waiting on the lock times out, is counted and retried, and lands once the lock goes', async () => {
    const d = await freshPostgres();
    open.push(d);
    const timed = await openDatabase({ url: d.url, dataDir: 'unused', predictionWriteTimeoutMs: 200 });
    open.push(timed);
    const m = testMetrics();
    const lines: string[] = [];
    const log = createPredictionLog({
      insert: timed.insertPredictions,
      bookingRef,
      metrics: m.metrics,
      logger: pino({ level: 'error' }, { write: (line: string) => lines.push(line) }),
      flushIntervalMs: 20,
      maxBackoffMs: 100,
    });
    const lock = await lockPredictions(d.url);
    log.enqueue(Array.from({ length: 30 }, (_, i) => row(`locked-${i}`)));
    await eventually(
      () => m.value('delay.prediction_log.write_errors'),
      (n) => n >= 2,
    );
    expect(log.depth()).toBe(30);
    expect(lines.filter((l) => l.includes('canceling statement due to statement timeout'))).toHaveLength(1);

    await lock.release();
    await eventually(
      () => count(d, predictions),
      (n) => n === 30,
    );
    expect(await m.value('delay.prediction_log.dropped')).toBe(0);
    await log.drain(1000);
  }, 30_000);

  it('the drain cancels a write stuck on the lock at its deadline, and counts and logs every row left', async () => {
    const d = await freshPostgres();
    open.push(d);
    const m = testMetrics();
    const lines: string[] = [];
    const log = createPredictionLog({
      insert: d.insertPredictions,
      bookingRef,
      metrics: m.metrics,
      logger: pino({ level: 'error' }, { write: (line: string) => lines.push(line) }),
      batchSize: 100,
      flushIntervalMs: 20,
    });
    log.enqueue(Array.from({ length: 100 }, (_, i) => row(`before-${i}`)));
    await eventually(
      () => count(d, predictions),
      (n) => n === 100,
    );
    const lock = await lockPredictions(d.url);
    log.enqueue(Array.from({ length: 250 }, (_, i) => row(`during-${i}`)));
    // The default statement timeout (5 s) is longer than the drain: the cancel ends the write.
    await log.drain(1000);
    expect(log.depth()).toBe(0);
    expect(await m.value('delay.prediction_log.dropped', { reason: 'shutdown' })).toBe(250);
    const left = lines.filter((l) => l.includes('rows left unwritten at shutdown'));
    expect(left.map((l) => JSON.parse(l).dropped)).toEqual([250]);
    expect(lines.filter((l) => l.includes('cannot write'))).toEqual([]);
    await lock.release();
    expect(await count(d, predictions)).toBe(100);
  }, 30_000);
});

describe('paired comparison', () => {
  it('finds no verdict when there is no difference, and says how many pairs it would need', () => {
    const diffs = Array.from({ length: 100 }, (_, i) => ((i * 7919) % 21) / 10 - 1);
    const result = pairedComparison(diffs);
    expect(result.verdict).toBe('not_yet_known');
    expect(result.ci95?.[0]).toBeLessThan(0);
    expect(result.ci95?.[1]).toBeGreaterThan(0);
  });

  it('needs no number of pairs when the difference is 0 up to float noise', () => {
    // Sums to 2.8e-17, not 0: a count from that noise would be some 1e32 pairs.
    const diffs = [0.1, 0.2, -0.3, 0.3, -0.2, -0.1];
    expect(diffs.reduce((s, d) => s + d, 0)).not.toBe(0);
    expect(pairedComparison(diffs)).toMatchObject({ mean_difference: 0, pairs_needed: null });
    expect(pairedComparison([0.5, 1.5, 0.5, 1.5]).pairs_needed).toBe(30);
  });

  it('is the same for the same data, and needs at least 30 pairs', () => {
    const diffs = Array.from({ length: 20 }, () => -2);
    expect(pairedComparison(diffs)).toEqual(pairedComparison(diffs));
    expect(pairedComparison(diffs).verdict).toBe('not_yet_known');
    expect(pairedComparison(Array.from({ length: 40 }, (_, i) => 2 + (i % 3))).verdict).toBe('ml_worse');
  });
});

describe('PGlite folder', () => {
  it('refuses a second opener of the same DATA_DIR with a clear error, and opens again once closed', async () => {
    const dataDir = tempDir('delay-pglite-lock-');
    const first = await openDatabase({ dataDir });
    try {
      await expect(openDatabase({ dataDir })).rejects.toThrow(DataDirInUseError);
      await expect(openDatabase({ dataDir })).rejects.toThrow(
        /DATA_DIR .* is in use by another process: PGlite serves one process only; .*DATABASE_URL/,
      );
    } finally {
      await first.close();
    }
    const again = await openDatabase({ dataDir });
    await again.close();
  });
});
