import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { context } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import {
  BasicTracerProvider,
  InMemorySpanExporter,
  ParentBasedSampler,
  SimpleSpanProcessor,
  TraceIdRatioBasedSampler,
} from '@opentelemetry/sdk-trace-base';
import { sql } from 'drizzle-orm';
import postgres from 'postgres';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { composeService } from '../compose.js';
import { type EnvName, loadConfig } from '../config/config.js';
import { createLogger } from '../telemetry/logger.js';
import { inSpan } from '../telemetry/spans.js';
import { freshPostgres, postgresAvailable } from '../test-support/databases.js';
import { booking, eventually, flagsFile, tempDir, testMeter } from '../test-support/harness.js';
import { BOOKING_REF_PATTERN, bookingRefs } from './booking-ref.js';

/*
 * Booking ids outside the prediction log (docs/privacy.md): the whole service as the server composes it, every
 * trace sampled and every log line kept, shows a booking only by its pseudonym; the reports answer a caller only
 * with the reports token, when one is set.
 */

const contextManager = new AsyncLocalStorageContextManager().enable();
context.setGlobalContextManager(contextManager);
afterAll(() => {
  context.disable();
});

const BOOKING_REF_KEY = 'privacy-test-booking-ref-key-0123';
const REPORTS_TOKEN = 'privacy-test-reports-token-0123';
const bookingRef = bookingRefs(BOOKING_REF_KEY);
const hasPostgres = await postgresAvailable();

/** The service through the composition root, with an in-memory span exporter at ratio 1 and every log line. */
async function tracedService(env: Partial<Record<EnvName, string>>) {
  const dir = tempDir('delay-privacy-');
  const config = loadConfig(
    {},
    {
      FLAGS_FILE: flagsFile({ mlWeight: 50 }, dir),
      FLAGS_POLL_INTERVAL_MS: '50',
      DATA_DIR: join(dir, 'data'),
      ...env,
    },
  );
  const exporter = new InMemorySpanExporter();
  const provider = new BasicTracerProvider({
    sampler: new ParentBasedSampler({ root: new TraceIdRatioBasedSampler(1) }),
    spanProcessors: [new SimpleSpanProcessor(exporter)],
  });
  const tracer = provider.getTracer('privacy-test');
  const lines: string[] = [];
  const logger = createLogger('trace', { write: (line: string) => lines.push(line) });
  const { meter, value: metricValue } = testMeter();
  const service = await composeService(config, {
    telemetry: { meter, tracer },
    logger,
    predictionLogFlushMs: 10,
  });
  await eventually(
    () => service.models.ready(),
    (ready) => ready,
  );
  /** A request inside a server span, named as the HTTP instrumentation names it (no query). */
  const request = (path: string, init: RequestInit = {}) =>
    tracer.startActiveSpan(`${init.method ?? 'GET'} ${path.split('?')[0]}`, async (span) => {
      try {
        return await service.app.request(path, init);
      } finally {
        span.end();
      }
    });
  const post = (path: string, body: unknown, headers: Record<string, string> = {}) =>
    request(path, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...headers },
      body: typeof body === 'string' ? body : JSON.stringify(body),
    });
  /** Every GET path of the OpenAPI document tagged `reports`: the A/B report and monitoring. */
  const reportPaths = async () => {
    const doc = (await (await service.app.request('/openapi.json')).json()) as {
      paths: Record<string, Record<string, { tags?: string[] }>>;
    };
    return Object.entries(doc.paths)
      .filter(([, methods]) => methods.get?.tags?.includes('reports'))
      .map(([path]) => path);
  };
  return {
    service,
    metricValue,
    tracer,
    exporter,
    lines,
    request,
    post,
    reportPaths,
    async close() {
      await service.close(2000);
      await provider.shutdown();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

type Traced = Awaited<ReturnType<typeof tracedService>>;

/** Every text an exported span carries: its name, status, attributes and its events' attributes. */
function spanTexts(exporter: InMemorySpanExporter): string[] {
  return exporter
    .getFinishedSpans()
    .flatMap((span) => [
      span.name,
      span.status.message ?? '',
      ...Object.values(span.attributes).map(String),
      ...span.events.flatMap((event) => [event.name, ...Object.values(event.attributes ?? {}).map(String)]),
    ]);
}

const leaks = (texts: string[], ids: string[]) =>
  texts.flatMap((text) =>
    ids.filter((id) => text.includes(id)).map((id) => `${id} in ${text.slice(0, 300)}`),
  );

describe('booking ids in traces and logs', () => {
  let t: Traced;
  beforeAll(async () => {
    t = await tracedService({ BOOKING_REF_KEY, REPORTS_TOKEN });
  }, 60_000);
  afterAll(() => t?.close());

  it('appear in no exported span and no log line; a flag evaluation carries the booking ref', async () => {
    const single = 'pv-single-7f3a91';
    const batch = Array.from({ length: 30 }, (_, i) => `pv-batch-${i}-c2e8`);
    const unknown = 'pv-unknown-5d10ee';
    const bad = ['pv-bad-single-0a1b', 'pv-bad-batch-2c3d', 'pv-bad-feedback-4e5f', 'pv-bad-json-6a7b'];
    const inQuery = 'pv-query-8c9d0e';
    const predicted = [single, ...batch];
    const clear = [...predicted, unknown, ...bad, inQuery];

    expect((await t.post('/v1/predictions', booking({ booking_id: single }))).status).toBe(200);
    const bookings = batch.map((id) => booking({ booking_id: id }));
    expect((await t.post('/v1/predictions/batch', { bookings })).status).toBe(200);
    // A repeat of a booking: evaluated again, stored again, scored once.
    expect((await t.post('/v1/predictions', booking({ booking_id: batch[0] }))).status).toBe(200);
    expect((await t.post('/v1/predictions', { booking_id: bad[0] })).status).toBe(400);
    const badBatch = { bookings: [booking({ booking_id: bad[1] }), { booking_id: bad[1] }] };
    expect((await t.post('/v1/predictions/batch', badBatch)).status).toBe(400);
    expect((await t.post('/v1/feedback', { booking_id: bad[2], actual_delay_minutes: 'late' })).status).toBe(
      400,
    );
    expect((await t.post('/v1/predictions', `{"booking_id": "${bad[3]}",`)).status).toBe(400);
    expect(
      (
        await t.request('/v1/predictions', {
          method: 'POST',
          headers: { 'content-type': 'text/plain' },
          body: JSON.stringify(booking({ booking_id: bad[3] })),
        })
      ).status,
    ).toBe(415);

    // Feedback once the predictions are stored: recorded, corrected, unknown.
    const stored = await eventually(
      () => t.post('/v1/feedback', { booking_id: single, actual_delay_minutes: 4 }),
      (res) => res.status === 200,
    );
    expect((await stored.json()).outcome).toBe('recorded');
    const corrected = await t.post('/v1/feedback', { booking_id: single, actual_delay_minutes: 6 });
    expect((await corrected.json()).outcome).toBe('corrected');
    const unknownAnswer = await t.post('/v1/feedback', { booking_id: unknown, actual_delay_minutes: 1 });
    expect(unknownAnswer.status).toBe(404);
    const items = batch.map((id, i) => ({ booking_id: id, actual_delay_minutes: i % 7 }));
    const results = await eventually(
      async () => (await (await t.post('/v1/feedback/batch', { feedback: items })).json()).results,
      (r: { outcome: string }[]) => r.every((item) => item.outcome !== 'unknown_booking'),
    );
    expect(results).toHaveLength(batch.length);
    expect(
      (
        await t.post('/v1/feedback/batch', {
          feedback: [
            { booking_id: batch[1], actual_delay_minutes: 30 },
            { booking_id: unknown, actual_delay_minutes: 2 },
          ],
        })
      ).status,
    ).toBe(200);

    // The reports, whose answers list booking ids (the caller holds the token), and a query that names one.
    const authorization = `Bearer ${REPORTS_TOKEN}`;
    for (const path of await t.reportPaths())
      expect((await t.request(path, { headers: { authorization } })).status, path).toBe(200);
    const latest = await t.request(`/v1/monitoring/predictions?limit=500&booking_id=${inQuery}`, {
      headers: { authorization },
    });
    expect((await latest.json()).predictions.map((p: { booking_id: string }) => p.booking_id)).toContain(
      single,
    );
    await eventually(
      () => t.service.predictionLog.depth(),
      (depth) => depth === 0,
    );

    const texts = spanTexts(t.exporter);
    expect(leaks(texts, clear)).toEqual([]);
    expect(leaks(t.lines, clear)).toEqual([]);

    // Each evaluation's event names its booking by the ref: the trace still leads to the stored row.
    const contextIds = t.exporter
      .getFinishedSpans()
      .flatMap((span) => span.events)
      .filter((event) => event.name === 'feature_flag.evaluation')
      .map((event) => event.attributes?.['feature_flag.context.id']);
    expect(contextIds).toHaveLength(predicted.length + 1);
    for (const id of contextIds) expect(id).toMatch(BOOKING_REF_PATTERN);
    expect(new Set(contextIds)).toEqual(new Set(predicted.map(bookingRef)));
    // The split is still the booking id's: both arms served, as the flag's 50% asks.
    const variants = new Set(
      t.exporter
        .getFinishedSpans()
        .flatMap((span) => span.events)
        .map((event) => event.attributes?.['feature_flag.result.variant']),
    );
    expect(variants).toEqual(new Set(['gbt-v2', 'heuristic']));

    // Where a booking helps on-call, the log line carries its ref.
    const logged = t.lines.map((line) => JSON.parse(line) as Record<string, unknown>);
    const corrections = logged.filter((line) => line.msg === 'feedback corrected');
    expect(corrections.map((line) => line.booking_ref)).toEqual([
      bookingRef(single),
      bookingRef(batch[1] ?? ''),
    ]);
    // The line levels the service wrote: trace and debug included, so nothing was left out by level.
    expect(logged.length).toBeGreaterThan(5);
  }, 60_000);

  it("keep a failed query's values out of a log line and a span, its query and cause kept", async () => {
    const id = 'pv-failed-query-1e2f3a';
    const failed = await t.service.database.db
      .execute(sql`select ${id}::integer as n`)
      .then(() => null)
      .catch((err: unknown) => err as Error);
    // The error as the driver and drizzle give it: the id in its message, its params and its cause.
    expect(failed?.message).toContain(id);
    expect(failed?.cause).toBeInstanceOf(Error);

    t.service.logger.error({ err: failed }, 'a failed query');
    const line = t.lines.at(-1) as string;
    expect(line).not.toContain(id);
    const { err } = JSON.parse(line) as { err: { type: string; message: string; stack: string } };
    expect(err.type).toBe('DrizzleQueryError');
    expect(err.message).toContain('Failed query: select $1::integer as n');
    expect(err.message).toContain('invalid input syntax for type integer');
    expect(err.stack).toMatch(/\n\s+at /);

    t.exporter.reset();
    await expect(inSpan(t.tracer, 'INSERT something', {}, () => Promise.reject(failed))).rejects.toBe(failed);
    const [span] = t.exporter.getFinishedSpans();
    expect(span?.events.map((e) => e.name)).toEqual(['exception']);
    expect(span?.events[0]?.attributes?.['exception.message']).toContain('Failed query');
    expect(leaks(spanTexts(t.exporter), [id])).toEqual([]);
  });

  it.skipIf(!hasPostgres)(
    "keep a failed Postgres query's values out of a log line (postgres-js)",
    async () => {
      const id = 'pv-failed-postgres-4b5c6d';
      const database = await freshPostgres();
      const client = postgres(database.url, { max: 1, onnotice: () => {} });
      try {
        const failed = await client
          .unsafe('select $1::integer as n', [id])
          .then(() => null)
          .catch((err: unknown) => err as Error);
        expect(failed?.message).toContain(id);
        t.service.logger.error({ err: failed }, 'a failed query');
        const line = t.lines.at(-1) as string;
        expect(line).not.toContain(id);
        expect(JSON.parse(line).err).toMatchObject({
          type: 'PostgresError',
          code: '22P02',
          message: 'invalid input syntax for type integer: "[withheld]"',
        });
      } finally {
        await client.end({ timeout: 1 });
        await database.close();
      }
    },
  );
});

describe('the report and monitoring endpoints', () => {
  it('answer 401 without the reports token when REPORTS_TOKEN is set, 200 with it', async () => {
    const t = await tracedService({ BOOKING_REF_KEY, REPORTS_TOKEN });
    try {
      const paths = await t.reportPaths();
      expect(paths.sort()).toEqual([
        '/v1/ab-report',
        '/v1/monitoring/anomalies',
        '/v1/monitoring/daily',
        '/v1/monitoring/predictions',
        '/v1/monitoring/summary',
      ]);
      for (const path of paths) {
        const refused: Record<string, string>[] = [
          {},
          { authorization: 'Bearer not-the-reports-token' },
          { authorization: REPORTS_TOKEN },
        ];
        for (const headers of refused) {
          const res = await t.request(path, { headers });
          expect(res.status, `${path} ${JSON.stringify(headers)}`).toBe(401);
          expect(res.headers.get('content-type')).toBe('application/problem+json');
          expect(res.headers.get('www-authenticate')).toBe('Bearer');
          expect(await res.json()).toMatchObject({ type: '/problems/unauthorized', status: 401 });
        }
        const res = await t.request(path, { headers: { authorization: `Bearer ${REPORTS_TOKEN}` } });
        expect(res.status, path).toBe(200);
      }
      // A monitoring path that does not exist says nothing to a caller without the token either.
      expect((await t.request('/v1/monitoring/unknown')).status).toBe(401);
      expect(await t.metricValue('delay.http.rejected_requests', { reason: 'unauthorized' })).toBe(
        paths.length * 3 + 1,
      );
      expect(t.lines.some((line) => line.includes('REPORTS_TOKEN'))).toBe(false);
      expect(t.lines.some((line) => line.includes(REPORTS_TOKEN))).toBe(false);
    } finally {
      await t.close();
    }
  }, 60_000);

  it('are open without REPORTS_TOKEN, with a warning at start', async () => {
    const t = await tracedService({ BOOKING_REF_KEY });
    try {
      for (const path of await t.reportPaths()) expect((await t.request(path)).status, path).toBe(200);
      const warnings = t.lines
        .map((line) => JSON.parse(line) as { level: number; msg: string })
        .filter((line) => line.level === 40 && line.msg.includes('REPORTS_TOKEN'));
      expect(warnings).toHaveLength(1);
    } finally {
      await t.close();
    }
  }, 60_000);
});
