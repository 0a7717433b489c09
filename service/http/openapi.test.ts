import { execFile } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { createRoute, z } from '@hono/zod-openapi';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freshPostgres, postgresAvailable } from '../test-support/databases.js';
import { booking, eventually, postJson, tempDir, testApp } from '../test-support/harness.js';
import { testService } from '../test-support/service.js';
import { routeApp } from './openapi.js';
import { problemResponse } from './problem.js';

const WEBHOOK_TOKEN = 'openapi-webhook-token-0123';

type Json = Record<string, unknown>;
type JsonSchema = Parameters<typeof z.fromJSONSchema>[0];
type Operation = { responses: Record<string, { content?: Record<string, { schema: Json }> }> };
interface Document {
  paths: Record<string, Record<string, Operation>>;
  components: { schemas: Record<string, Json> };
}

/**
 * A schema of the document as JSON Schema 2020-12 with its components as `$defs`, and every object that
 * lists its properties closed: an answer carrying a field the document does not name fails, as does a
 * wrong type or a missing required field.
 */
function closed(node: unknown): unknown {
  if (Array.isArray(node)) return node.map(closed);
  if (node === null || typeof node !== 'object') return node;
  const out: Json = {};
  for (const [key, value] of Object.entries(node)) {
    out[key] =
      key === '$ref' && typeof value === 'string'
        ? value.replace('#/components/schemas/', '#/$defs/')
        : closed(value);
  }
  if ('properties' in out && !('additionalProperties' in out)) out.additionalProperties = false;
  return out;
}

function validatorOf(doc: Document) {
  const defs = closed(doc.components.schemas) as Json;
  return (method: string, path: string, status: number, contentType: string) => {
    const operation = doc.paths[path]?.[method];
    if (!operation) throw new Error(`the document has no ${method} ${path}`);
    const response = operation.responses[String(status)];
    if (!response) throw new Error(`${method} ${path} does not document ${status}`);
    const media = response.content?.[contentType.split(';')[0] as string];
    if (!media) throw new Error(`${method} ${path} ${status} does not document ${contentType}`);
    return z.fromJSONSchema({ ...(closed(media.schema) as Json), $defs: defs } as JsonSchema);
  };
}

type Service = Awaited<ReturnType<typeof testService>>;

/** The whole service, every route mounted (reports with a database, the webhook with a token), half on ML. */
async function wholeService(env: { DATABASE_URL?: string } = {}) {
  const service = await testService({
    flags: { mlWeight: 50 },
    env: { ALERTMANAGER_WEBHOOK_TOKEN: WEBHOOK_TOKEN, ...env },
  });
  await eventually(
    () => service.models.ready(),
    (ready) => ready,
  );
  return service;
}

const hasPostgres = await postgresAvailable();

describe('the OpenAPI document', () => {
  let service: Service;
  let doc: Document;
  let schemaOf: ReturnType<typeof validatorOf>;
  beforeAll(async () => {
    service = await wholeService();
    doc = (await (await service.app.request('/openapi.json')).json()) as Document;
    schemaOf = validatorOf(doc);
  });
  afterAll(() => service?.close());

  const reads = [
    '/v1/ab-report',
    '/v1/monitoring/summary',
    '/v1/monitoring/daily',
    '/v1/monitoring/predictions',
    '/v1/monitoring/anomalies?threshold_mae=0',
  ];

  /**
   * Calls every operation of `target` (reports empty, then with predictions of both arms and their feedback)
   * and checks each answer against the document's schema for its status and media type.
   */
  async function answersMatchTheDocument(target: Service) {
    const answered = new Set<string>();
    const call = async (path: string, init?: RequestInit) => {
      const res = await target.app.request(path, init);
      const method = (init?.method ?? 'GET').toLowerCase();
      const route = new URL(path, 'http://service').pathname;
      const json = await res.json();
      const schema = schemaOf(method, route, res.status, res.headers.get('content-type') ?? '');
      const issues = schema.safeParse(json).error?.issues;
      expect(issues, `${method} ${path} ${res.status}: ${JSON.stringify(json)}`).toBeUndefined();
      answered.add(`${method} ${route}`);
      return { status: res.status, json };
    };
    const post = (path: string, body: unknown, headers: Record<string, string> = {}) =>
      call(path, {
        method: 'POST',
        headers: { 'content-type': 'application/json', ...headers },
        body: JSON.stringify(body),
      });

    // Before any prediction: the reports' nulls.
    const empty = await Promise.all(reads.map((path) => call(path)));
    expect(empty.map((r) => r.status)).toEqual([200, 200, 200, 200, 200]);
    expect(empty[0]?.json.paired).toMatchObject({ mean_difference: null, ci95: null });
    expect(empty[1]?.json).toMatchObject({ mean_latency_ms: null, accuracy: { ml: { mae: null } } });

    expect((await post('/v1/predictions', booking({ booking_id: 'one' }))).status).toBe(200);
    const bookings = Array.from({ length: 40 }, (_, i) => booking({ booking_id: `b-${i}` }));
    expect((await post('/v1/predictions/batch', { bookings })).status).toBe(200);
    expect((await post('/v1/predictions', { booking_id: 'no-trip' })).status).toBe(400);
    expect((await call('/v1/predictions', { method: 'POST', body: 'x' })).status).toBe(415);
    await eventually(
      async () => (await call('/v1/monitoring/predictions?limit=500')).json.predictions.length,
      (n) => n === 41,
    );

    expect((await post('/v1/feedback', { booking_id: 'one', actual_delay_minutes: 4 })).status).toBe(200);
    expect((await post('/v1/feedback', { booking_id: 'nobody', actual_delay_minutes: 4 })).status).toBe(404);
    const feedback = bookings.map((b, i) => ({
      booking_id: b.booking_id,
      actual_delay_minutes: (i % 9) * 3,
    }));
    expect((await post('/v1/feedback/batch', { feedback })).status).toBe(200);

    // With predictions of both arms and their feedback: the reports' numbers.
    const [ab, summary, daily, latest, anomalies] = await Promise.all(reads.map((path) => call(path)));
    expect(ab?.json.arms.ml.n).toBeGreaterThan(0);
    expect(ab?.json.arms.heuristic.n).toBeGreaterThan(0);
    expect(ab?.json.paired.ci95).toHaveLength(2);
    expect(summary?.json.predictions).toBe(41);
    expect(daily?.json.days[0].with_feedback).toBe(41);
    expect(latest?.json.predictions[0].actual_delay_minutes).not.toBeNull();
    expect(anomalies?.json.anomalies.length).toBeGreaterThan(0);
    expect(Date.parse(latest?.json.predictions[0].predicted_at)).toBeGreaterThan(Date.now() - 60_000);
    expect((await call('/v1/ab-report?days=0')).status).toBe(400);

    expect((await call('/healthz')).status).toBe(200);
    expect((await call('/readyz')).status).toBe(200);
    expect((await call('/v1/flags/status')).json.split).toHaveLength(2);

    const webhook = '/v1/webhooks/alertmanager';
    const alert = {
      status: 'firing',
      labels: { alertname: 'DelayModelLosingToRulesFast', rollback: 'true', signal: 'feedback' },
    };
    expect((await post(webhook, { status: 'firing', alerts: [alert] })).status).toBe(401);
    const authorization = `Bearer ${WEBHOOK_TOKEN}`;
    const rollback = await post(webhook, { status: 'firing', alerts: [alert] }, { authorization });
    expect(rollback.json.ml_percentage).toBe(0);

    // Every operation of the document was answered above.
    const operations = Object.entries(doc.paths).flatMap(([path, methods]) =>
      Object.keys(methods).map((method) => `${method} ${path}`),
    );
    expect(operations.filter((op) => !answered.has(op))).toEqual([]);
  }

  it('describes every answer the service gives, field by field (PGlite)', () =>
    answersMatchTheDocument(service));

  it.skipIf(!hasPostgres)('describes every answer the service gives, field by field (Postgres)', async () => {
    const postgres = await freshPostgres();
    const onPostgres = await wholeService({ DATABASE_URL: postgres.url });
    try {
      await answersMatchTheDocument(onPostgres);
    } finally {
      await onPostgres.close();
      await postgres.close();
    }
  });

  it('titles a 400 by where the bad input is: query parameters of a report, the body of a prediction', async () => {
    const query = await service.app.request('/v1/ab-report?days=abc');
    expect(query.status).toBe(400);
    expect(await query.json()).toMatchObject({
      type: '/problems/validation',
      title: 'The query parameters are not valid',
      errors: [{ pointer: '/days' }],
    });
    const body = await postJson(service.app, '/v1/predictions', { booking_id: 'no-trip' });
    expect((await body.json()).title).toBe('The request body is not valid');
  });

  it('describes the problem of a model missing with its fallback off', async () => {
    // An app without a model (no database needed): ML fails for every booking, and the fallback is off.
    const bare = await testApp({ flags: { mlWeight: 100, fallbackOnError: false } });
    try {
      const res = await postJson(bare.app, '/v1/predictions', booking());
      const problem = await res.json();
      expect(problem).toMatchObject({
        type: '/problems/ml-unavailable',
        fallback_reason: 'model_unavailable',
      });
      const schema = schemaOf('post', '/v1/predictions', res.status, res.headers.get('content-type') ?? '');
      expect(schema.safeParse(problem).error?.issues).toBeUndefined();
    } finally {
      await bare.close();
    }
  });

  it('would refuse an answer it does not describe', () => {
    const arm = { n: 1, mae: 1, rmse: 1, r2: null };
    const figures = {
      n: 1,
      late: 1,
      flagged: 1,
      anticipated: 1,
      false_alarms: 0,
      buffer_unused_minutes: 0,
      buffer_shortfall_minutes: 2,
      anticipated_ratio: 1,
      false_alarm_ratio: 0,
      buffer_unused_minutes_mean: 0,
      buffer_shortfall_minutes_mean: 2,
      cost: null,
    };
    const report = {
      window_days: 30,
      arms: { ml: arm, heuristic: arm, heuristic_shadow_on_ml: arm },
      ml_by_model_version: { 'gbt-v2': arm },
      paired: { n: 1, mean_difference: 0, ci95: [0, 0], verdict: 'not_yet_known', pairs_needed: 30 },
      business: {
        late_threshold_minutes: 10,
        cost_per_delay_minute: null,
        ml: figures,
        heuristic: figures,
        heuristic_shadow_on_ml: figures,
        ml_against_rules: {
          buffer_unused_change: null,
          buffer_shortfall_change: 0,
          buffer_minutes_change: 0,
        },
      },
    };
    const schema = schemaOf('get', '/v1/ab-report', 200, 'application/json');
    expect(schema.safeParse(report).success).toBe(true);
    expect(schema.safeParse({ ...report, extra: 1 }).success).toBe(false);
    expect(schema.safeParse({ ...report, arms: { ...report.arms, ml: { ...arm, mae: '1' } } }).success).toBe(
      false,
    );
    expect(schema.safeParse({ ...report, paired: { ...report.paired, verdict: 'maybe' } }).success).toBe(
      false,
    );
    const shareOf = (anticipated_ratio: number | null) => ({
      ...report,
      business: { ...report.business, ml: { ...figures, anticipated_ratio } },
    });
    expect(schema.safeParse(shareOf(null)).success).toBe(true);
    expect(schema.safeParse(shareOf(1.5)).success).toBe(false);
    const latest = schemaOf('get', '/v1/monitoring/predictions', 200, 'application/json');
    const row = {
      booking_id: 'b',
      predicted_at: '2026-12-02 06:29:03.838+00',
      source: 'ml',
      variant: 'gbt-v2',
      model_version: 'gbt-v2',
      fallback_reason: null,
      delay_minutes: 1,
      interval_low: 0,
      interval_high: 2,
      shadow_heuristic_delay: 1,
      weather_source: 'default',
      latency_ms: 1,
      actual_delay_minutes: null,
    };
    // Postgres's own text for a timestamp is not RFC 3339.
    expect(latest.safeParse({ predictions: [row] }).success).toBe(false);
    expect(
      latest.safeParse({ predictions: [{ ...row, predicted_at: '2026-12-02T06:29:03.838Z' }] }).success,
    ).toBe(true);
  });

  it("passes redocly's recommended rules, with no error and no warning", async () => {
    const file = join(tempDir('openapi-'), 'openapi.json');
    writeFileSync(file, JSON.stringify(doc));
    // Async: a blocking spawn would stall the service this process runs while redocly starts (a second or two).
    const { stdout } = await promisify(execFile)(
      process.execPath,
      ['node_modules/@redocly/cli/bin/cli.js', 'lint', file, '--config', 'redocly.yaml', '--format', 'json'],
      {
        env: {
          PATH: process.env.PATH ?? '',
          REDOCLY_TELEMETRY: 'off',
          REDOCLY_SUPPRESS_UPDATE_NOTICE: 'true',
        },
      },
    ).catch((err: { stdout?: string; message: string }) => {
      if (!err.stdout) throw err;
      return { stdout: err.stdout };
    });
    const { totals, problems } = JSON.parse(stdout) as {
      totals: { errors: number; warnings: number };
      problems: { ruleId: string; message: string; location: { pointer: string }[] }[];
    };
    const found = problems.map((p) => `${p.ruleId} ${p.location[0]?.pointer}: ${p.message}`);
    expect(found).toEqual([]);
    expect(totals).toMatchObject({ errors: 0, warnings: 0 });
  }, 60_000);

  it('documents a 4xx on every operation that takes input (operation-4xx-response is off: see redocly.yaml)', () => {
    for (const [path, methods] of Object.entries(doc.paths)) {
      for (const [method, op] of Object.entries(methods) as [string, Operation & Json][]) {
        const takesInput =
          Boolean(op.requestBody) || ((op.parameters as unknown[] | undefined)?.length ?? 0) > 0;
        const has4xx = Object.keys(op.responses).some((code) => code.startsWith('4'));
        expect(has4xx || !takesInput, `${method} ${path}`).toBe(true);
      }
    }
  });
});

describe('validation problems of a route app', () => {
  it('name the path parameters and the headers when those are bad', async () => {
    const app = routeApp((problem) => problemResponse(problem));
    app.openapi(
      createRoute({
        method: 'get',
        path: '/things/{id}',
        request: {
          params: z.object({ id: z.coerce.number().int() }),
          headers: z.object({ 'x-tenant': z.string().min(3) }),
        },
        responses: { 200: { description: 'ok' } },
      }),
      (c) => c.body(null, 200),
    );
    const path = await app.request('/things/abc', { headers: { 'x-tenant': 'acme' } });
    expect(path.status).toBe(400);
    expect(await path.json()).toMatchObject({ title: 'The path parameters are not valid' });
    const header = await app.request('/things/1', { headers: { 'x-tenant': 'a' } });
    expect(header.status).toBe(400);
    expect(await header.json()).toMatchObject({ title: 'The request headers are not valid' });
    expect((await app.request('/things/1', { headers: { 'x-tenant': 'acme' } })).status).toBe(200);
  });
});
