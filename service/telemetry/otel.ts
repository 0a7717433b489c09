import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { register } from 'node:module';
import { metrics, trace } from '@opentelemetry/api';
import { PrometheusExporter } from '@opentelemetry/exporter-prometheus';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-http';
import { HttpInstrumentation } from '@opentelemetry/instrumentation-http';
import { IORedisInstrumentation } from '@opentelemetry/instrumentation-ioredis';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { NodeSDK } from '@opentelemetry/sdk-node';
import {
  AlwaysOffSampler,
  BatchSpanProcessor,
  NoopSpanProcessor,
  ParentBasedSampler,
  TraceIdRatioBasedSampler,
} from '@opentelemetry/sdk-trace-base';
import { ATTR_SERVICE_NAME, ATTR_SERVICE_VERSION } from '@opentelemetry/semantic-conventions';

export const INSTRUMENTATION_SCOPE = 'delay-prediction-service';
const SERVICE_VERSION = (
  JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }
).version;
const QUIET_PATHS = new Set(['/healthz', '/readyz', '/metrics']);

/**
 * The OpenTelemetry NodeSDK, started before the app is imported so its instrumentations patch http and
 * ioredis as they load. Metrics: Prometheus exporter on its own port. Traces: OTLP over HTTP when an endpoint
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
      'service.instance.id': randomUUID(),
      ...(deploymentEnvironment ? { 'deployment.environment.name': deploymentEnvironment } : {}),
    }),
    metricReader: prometheus,
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
      }),
      new IORedisInstrumentation(),
    ],
  });
  sdk.start();
  return {
    meter: metrics.getMeter(INSTRUMENTATION_SCOPE),
    tracer: trace.getTracer(INSTRUMENTATION_SCOPE),
    shutdown: () => sdk.shutdown(),
  };
}

export type Telemetry = Awaited<ReturnType<typeof startTelemetry>>;
