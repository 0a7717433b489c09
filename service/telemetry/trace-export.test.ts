import { randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it, onTestFinished } from 'vitest';
import { BOOKING_REF_PATTERN } from '../privacy/booking-ref.js';
import { booking, flagsDocument, flagsFile, tempDir } from '../test-support/harness.js';
import { startKubernetesApiStandIn } from '../test-support/kubernetes-api-stand-in.js';
import { startOtlpSink } from '../test-support/otlp-sink.js';
import { startService, waitForReady } from '../test-support/process.js';

/** The real process exporting to a local OTLP sink, ML for every booking; spans are read after SIGTERM flushed them. */
async function serviceTracingTo(traceSampleRatio?: string) {
  const sink = await startOtlpSink({ keepSpans: true });
  const service = await startService({
    FLAGS_FILE: flagsFile({ mlWeight: 100 }),
    OTEL_EXPORTER_OTLP_ENDPOINT: sink.url,
    DEPLOYMENT_ENVIRONMENT: 'staging',
    ...(traceSampleRatio === undefined ? {} : { TRACE_SAMPLE_RATIO: traceSampleRatio }),
  });
  onTestFinished(() => sink.close());
  onTestFinished(async () => {
    await service.stop('SIGKILL');
  });
  await waitForReady(service);
  const predict = (id: string, headers: Record<string, string> = {}, query = '') =>
    fetch(`http://127.0.0.1:${service.port}/v1/predictions${query}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...headers },
      body: JSON.stringify(booking({ booking_id: id })),
    }).then((res) => res.status);
  const spansAfterStop = async () => {
    expect(await service.stop('SIGTERM')).toBe(0);
    return sink.spans();
  };
  const scrape = () => fetch(`http://127.0.0.1:${service.metricsPort}/metrics`).then((res) => res.text());
  return { predict, scrape, spansAfterStop, sinkUrl: sink.url };
}

/** OTLP's span kinds. */
const SPAN_KIND_SERVER = 2;
const SPAN_KIND_CLIENT = 3;

const traceparent = (traceId: string, sampled: boolean) =>
  `00-${traceId}-${randomBytes(8).toString('hex')}-${sampled ? '01' : '00'}`;

describe('trace export', () => {
  it('at the default ratio (1), exports every prediction trace with its spans', async () => {
    const { predict, scrape, spansAfterStop, sinkUrl } = await serviceTracingTo();
    const ids = Array.from({ length: 5 }, (_, i) => `trace-export-booking-${i}`);
    for (const [i, id] of ids.entries()) {
      // The last one also names its booking in the query, as a careless caller might.
      expect(await predict(id, {}, i === 4 ? `?booking_id=${id}` : '')).toBe(200);
      await scrape();
    }

    const spans = await spansAfterStop();
    const version = JSON.parse(readFileSync('package.json', 'utf8')).version;
    for (const span of spans)
      expect(span.resource).toMatchObject({
        'service.name': 'delay-prediction',
        'service.version': version,
        'service.instance.id': expect.stringMatching(/^[0-9a-f-]{36}$/),
        'deployment.environment.name': 'staging',
      });
    const servers = spans.filter((s) => s.kind === SPAN_KIND_SERVER);
    expect(servers).toHaveLength(5);
    for (const server of servers)
      expect(server.attributes).toMatchObject({
        'http.route': '/v1/predictions',
        'http.request.method': 'POST',
      });
    expect(servers.map((s) => s.attributes['url.query']).filter(Boolean)).toEqual(['booking_id=REDACTED']);
    // No booking id in clear anywhere (docs/privacy.md): the evaluation events carry its pseudonym.
    expect(JSON.stringify(spans)).not.toContain('trace-export-booking-');
    // Neither the export to the sink nor the scrapes of /metrics made a span: no loop feeding itself.
    const port = new URL(sinkUrl).port;
    expect(
      spans.filter(
        (s) =>
          String(s.attributes['url.full'] ?? '').includes(port) || s.attributes['url.path'] === '/metrics',
      ),
    ).toEqual([]);
    // Each booking's evaluation is an event of the flag step's span, under the feature-flag conventions.
    const flagStep = spans.find((s) => s.name === 'feature_flag.evaluation delay-model');
    expect(flagStep?.events).toEqual([
      {
        name: 'feature_flag.evaluation',
        attributes: expect.objectContaining({
          'feature_flag.key': 'delay-model',
          'feature_flag.provider.name': 'flagd',
          'feature_flag.result.variant': 'gbt-v2',
          'feature_flag.context.id': expect.stringMatching(BOOKING_REF_PATTERN),
        }),
      },
    ]);
    // The prediction log's writes: database client spans (postgres-js and PGlite have no instrumentation).
    const insert = spans.find((s) => s.name === 'INSERT predictions');
    expect(insert?.kind).toBe(SPAN_KIND_CLIENT);
    expect(insert?.attributes).toMatchObject({
      'db.system.name': 'postgresql',
      'db.collection.name': 'predictions',
    });
    const inference = spans.filter((s) => s.name === 'model.inference');
    expect(inference).toHaveLength(5);
    expect(new Set(inference.map((s) => s.traceId)).size).toBe(5);
    for (const { traceId } of inference) {
      const names = spans.filter((s) => s.traceId === traceId).map((s) => s.name);
      // The server span is named by the route Hono matched (semantic conventions), not the method alone.
      expect(names).toEqual(
        expect.arrayContaining(['POST /v1/predictions', 'feature_flag.evaluation delay-model']),
      );
    }
  });

  it('at ratio 0, exports only the traces a caller marked sampled', async () => {
    const { predict, spansAfterStop } = await serviceTracingTo('0');
    const followed = randomBytes(16).toString('hex');
    const declined = randomBytes(16).toString('hex');
    for (let i = 0; i < 5; i++) expect(await predict(`u-${i}`)).toBe(200);
    expect(await predict('sampled-by-caller', { traceparent: traceparent(followed, true) })).toBe(200);
    expect(await predict('declined-by-caller', { traceparent: traceparent(declined, false) })).toBe(200);

    const spans = await spansAfterStop();
    expect(spans.length).toBeGreaterThan(0);
    expect(spans.every((s) => s.traceId === followed)).toBe(true);
    expect(spans.map((s) => s.name)).toEqual(
      expect.arrayContaining(['POST /v1/predictions', 'model.inference']),
    );
  });

  it('traces the Kubernetes API calls of a rollback as client spans that send their trace context', async () => {
    const api = await startKubernetesApiStandIn({
      namespace: 'delay-prediction',
      name: 'delay-prediction',
      flags: flagsDocument({ mlWeight: 50 }).flags,
    });
    onTestFinished(() => api.close());
    const tokenFile = join(tempDir(), 'token');
    writeFileSync(tokenFile, 'service-account-token');
    const sink = await startOtlpSink({ keepSpans: true });
    onTestFinished(() => sink.close());
    const webhookToken = 'k8s-webhook-token-0123456789';
    // As the pod's flagd sidecar: the service routes on what flagd serves (a stand-in serving the same flags).
    const { startFlagdStandIn } = await import('../test-support/flagd-stand-in.js');
    const flagd = await startFlagdStandIn(flagsFile({ mlWeight: 50 }));
    onTestFinished(() => flagd.close());
    const service = await startService({
      FLAGS_FILE: flagsFile({ mlWeight: 50 }),
      FLAGD_HOST: flagd.host,
      FLAGD_PORT: String(flagd.port),
      FLAGS_FEATUREFLAG: 'delay-prediction/delay-prediction',
      KUBERNETES_API_URL: api.url,
      KUBERNETES_TOKEN_FILE: tokenFile,
      ALERTMANAGER_WEBHOOK_TOKEN: webhookToken,
      OTEL_EXPORTER_OTLP_ENDPOINT: sink.url,
    });
    onTestFinished(async () => {
      await service.stop('SIGKILL');
    });
    await waitForReady(service);
    const res = await fetch(`http://127.0.0.1:${service.port}/v1/webhooks/alertmanager`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${webhookToken}` },
      body: JSON.stringify({
        status: 'firing',
        alerts: [{ status: 'firing', labels: { alertname: 'DelayMlErrorRatioHigh', rollback: 'true' } }],
      }),
    });
    expect(res.status).toBe(200);
    expect(await service.stop('SIGTERM')).toBe(0);

    const spans = sink.spans();
    const webhook = spans.find((s) => s.attributes['http.route'] === '/v1/webhooks/alertmanager');
    const calls = spans.filter(
      (s) => s.kind === SPAN_KIND_CLIENT && String(s.attributes['url.full']).startsWith(api.url),
    );
    expect(calls.map((s) => s.attributes['http.request.method']).sort()).toEqual(['GET', 'PATCH']);
    for (const call of calls) expect(call.traceId).toBe(webhook?.traceId);
    expect(api.requests.map((r) => r.traceparent?.split('-')[1])).toEqual(
      api.requests.map(() => webhook?.traceId),
    );
  });
});
