import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { register } from 'node:module';
import { metrics, trace } from '@opentelemetry/api';
import { PrometheusExporter } from '@opentelemetry/exporter-prometheus';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-http';
import { HttpInstrumentation } from '@opentelemetry/instrumentation-http';
import { IORedisInstrumentation } from '@opentelemetry/instrumentation-ioredis';
import { RuntimeNodeInstrumentation } from '@opentelemetry/instrumentation-runtime-node';
import { UndiciInstrumentation } from '@opentelemetry/instrumentation-undici';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { AggregationType, type ViewOptions } from '@opentelemetry/sdk-metrics';
import { NodeSDK } from '@opentelemetry/sdk-node';
import {
  AlwaysOffSampler,
  BatchSpanProcessor,
  NoopSpanProcessor,
  ParentBasedSampler,
  TraceIdRatioBasedSampler,
} from '@opentelemetry/sdk-trace-base';
import {
  ATTR_DEPLOYMENT_ENVIRONMENT_NAME,
  ATTR_SERVICE_INSTANCE_ID,
  ATTR_SERVICE_NAME,
  ATTR_SERVICE_VERSION,
  ATTR_URL_FULL,
  ATTR_URL_QUERY,
  METRIC_HTTP_CLIENT_REQUEST_DURATION,
} from '@opentelemetry/semantic-conventions';

export const INSTRUMENTATION_SCOPE = 'delay-prediction-service';
const SERVICE_VERSION = (
  JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }
).version;
const QUIET_PATHS = new Set(['/healthz', '/readyz', '/metrics']);
/** The event-loop delay histogram's sampling interval: every delay figure includes it. */
export const EVENT_LOOP_SAMPLING_MS = 10;

/**
 * A URL as a span may show it: query values replaced by `REDACTED`, their keys kept. Outgoing queries carry
 * OpenWeatherMap's API key (`appid`) and pickup coordinates; the semantic conventions ask `url.full` and
 * `url.query` to scrub such values.
 */
export function redactedUrl(url: URL) {
  const redacted = new URL(url);
  for (const key of new Set(url.searchParams.keys())) redacted.searchParams.set(key, 'REDACTED');
  return { full: redacted.toString(), query: redacted.search.slice(1) };
}

/**
 * The query of a request the service answers, as its server span may show it: every value redacted as above. The
 * API takes no booking id in a URL, but a caller may put one there (or anything else); the span keeps the keys.
 */
export function incomingQueryAttributes(requestUrl = '/') {
  const at = requestUrl.indexOf('?');
  if (at < 0) return {};
  // Parsed as a query alone: any request line, however malformed, has its values redacted.
  const url = new URL('http://service/');
  url.search = requestUrl.slice(at + 1);
  return url.search ? { [ATTR_URL_QUERY]: redactedUrl(url).query } : {};
}

/**
 * Client spans for `fetch` (OpenWeatherMap, Prometheus for the promoter), with the `traceparent` the callee
 * continues. The SDK's span processor exports with tracing suppressed, so the OTLP export makes no span.
 */
export function fetchInstrumentation() {
  return new UndiciInstrumentation({
    startSpanHook: (request) => {
      const { full, query } = redactedUrl(new URL(request.path, request.origin));
      return { [ATTR_URL_FULL]: full, [ATTR_URL_QUERY]: query };
    },
  });
}

/**
 * The http and the undici instrumentations both record `http.client.request.duration`. The Prometheus exporter
 * writes one family per instrumentation scope, and two families of one name make the whole scrape invalid
 * ("second HELP line"). The http instrumentation's is dropped: it times the OTLP export's own requests and the
 * Kubernetes API's (whose spans stay); fetch's, the dependencies a prediction or the promoter waits on, remain.
 */
export const METRIC_VIEWS: ViewOptions[] = [
  {
    meterName: '@opentelemetry/instrumentation-http',
    instrumentName: METRIC_HTTP_CLIENT_REQUEST_DURATION,
    aggregation: { type: AggregationType.DROP },
  },
];

/**
 * The OpenTelemetry NodeSDK, started before the app is imported so its instrumentations patch http and
 * ioredis as they load; `fetch` is traced through undici's diagnostics channels. Metrics: Prometheus exporter on
 * its own port, the runtime's under their semantic-convention names. Traces: OTLP over HTTP when an endpoint
 * is configured; without one, spans still carry trace ids (for logs and stored predictions) and go nowhere.
 * fs, dns and net instrumentations are not installed: one span per file read or socket is noise.
 * With an endpoint, sampling is decided at the root: `traceSampleRatio` of the traces the service starts, and
 * every trace a caller marked sampled in its `traceparent`. Without one nothing is recorded. An unsampled span
 * still has real ids, and costs little.
 */
export async function startTelemetry({
  metricsPort,
  host,
  otlpEndpoint,
  traceSampleRatio,
  deploymentEnvironment,
}: {
  metricsPort: number;
  host: string;
  otlpEndpoint: string | undefined;
  traceSampleRatio: number;
  deploymentEnvironment?: string | undefined;
}) {
  // ESM modules are patched through import-in-the-middle's loader hook; CommonJS through require hooks.
  register('@opentelemetry/instrumentation/hook.mjs', import.meta.url);
  const prometheus = new PrometheusExporter({ port: metricsPort, host, preventServerStart: true });
  await prometheus.startServer();
  const sdk = new NodeSDK({
    // Replicas and releases told apart: the package's version, one id per process, the deployment's name.
    resource: resourceFromAttributes({
      [ATTR_SERVICE_NAME]: 'delay-prediction',
      [ATTR_SERVICE_VERSION]: SERVICE_VERSION,
      [ATTR_SERVICE_INSTANCE_ID]: randomUUID(),
      ...(deploymentEnvironment ? { [ATTR_DEPLOYMENT_ENVIRONMENT_NAME]: deploymentEnvironment } : {}),
    }),
    metricReader: prometheus,
    views: METRIC_VIEWS,
    // Nothing to export to: spans are not recorded, and still carry real ids for logs and stored predictions.
    sampler: otlpEndpoint
      ? new ParentBasedSampler({ root: new TraceIdRatioBasedSampler(traceSampleRatio) })
      : new AlwaysOffSampler(),
    // A processor must be there even without an endpoint: with none the SDK installs no tracer provider, and
    // every span (and so every trace id in logs and stored predictions) would be the all-zero no-op.
    spanProcessors: [
      otlpEndpoint
        ? new BatchSpanProcessor(
            new OTLPTraceExporter({ url: new URL('/v1/traces', otlpEndpoint).toString() }),
          )
        : new NoopSpanProcessor(),
    ],
    instrumentations: [
      new HttpInstrumentation({
        ignoreIncomingRequestHook: (req) => QUIET_PATHS.has((req.url ?? '').split('?')[0] ?? ''),
        startIncomingSpanHook: (req) => incomingQueryAttributes(req.url),
      }),
      new IORedisInstrumentation(),
      fetchInstrumentation(),
      // nodejs.eventloop.*, v8js.memory.heap.*, v8js.gc.duration: event-loop figures cover the time since
      // the previous scrape.
      new RuntimeNodeInstrumentation({ monitoringPrecision: EVENT_LOOP_SAMPLING_MS }),
    ],
  });
  sdk.start();
  const meter = metrics.getMeter(INSTRUMENTATION_SCOPE);
  // Resident memory, which no installed instrumentation reports, under the semantic conventions' name
  // (the host-metrics instrumentation's `process.memory.usage`).
  meter
    .createObservableUpDownCounter('process.memory.usage', {
      description: 'Resident set size of the process',
      unit: 'By',
    })
    .addCallback((result) => result.observe(process.memoryUsage.rss()));
  return {
    meter,
    tracer: trace.getTracer(INSTRUMENTATION_SCOPE),
    shutdown: () => sdk.shutdown(),
  };
}

export type Telemetry = Awaited<ReturnType<typeof startTelemetry>>;
