import { context, trace } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import {
  BasicTracerProvider,
  InMemorySpanExporter,
  SimpleSpanProcessor,
} from '@opentelemetry/sdk-trace-base';
import { afterAll, describe, expect, it } from 'vitest';
import type { ModelRegistry } from '../models/model-registry.js';
import type { PredictionLog, PredictionRow } from '../storage/prediction-log.js';
import { booking, postJson, testApp } from '../test-support/harness.js';

const contextManager = new AsyncLocalStorageContextManager().enable();
context.setGlobalContextManager(contextManager);
afterAll(() => {
  context.disable();
});

describe('log lines', () => {
  it('carry the trace and span ids of the span they are written in', async () => {
    const { createLogger } = await import('./logger.js');
    const lines: string[] = [];
    const logger = createLogger('info', { write: (line: string) => lines.push(line) });
    const tracer = new BasicTracerProvider().getTracer('test');
    const ids = tracer.startActiveSpan('work', (span) => {
      logger.info('inside');
      span.end();
      return span.spanContext();
    });
    logger.info('outside');
    expect(JSON.parse(lines[0] as string)).toMatchObject({
      msg: 'inside',
      trace_id: ids.traceId,
      span_id: ids.spanId,
    });
    expect(JSON.parse(lines[1] as string).trace_id).toBeUndefined();
  });
});

describe('a prediction trace', () => {
  it('shows flag evaluation, weather lookup and inference under the request span, and is stored with the prediction', async () => {
    const exporter = new InMemorySpanExporter();
    const provider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] });
    const tracer = provider.getTracer('test');
    const rows: PredictionRow[] = [];
    const predictionLog: PredictionLog = {
      enqueue: (r) => rows.push(...r),
      depth: () => 0,
      drain: async () => {},
    };
    const models: ModelRegistry = {
      ready: () => true,
      versions: () => ['gbt-v2'],
      lookup: (version) => ({
        ok: true,
        model: {
          version,
          predict: async (f) =>
            f.map(() => ({
              delay_minutes: 4,
              interval: { low: 2, high: 7, level: 0.8 },
              contributing_factors: [],
            })),
        },
      }),
    };
    const t = await testApp({ flags: { mlWeight: 100 }, deps: { tracer, predictionLog, models } });
    try {
      // The HTTP instrumentation's server span, as the NodeSDK would open it.
      const traceId = await tracer.startActiveSpan('POST /v1/predictions', async (span) => {
        const res = await postJson(t.app, '/v1/predictions', booking());
        expect(res.status).toBe(200);
        span.end();
        return span.spanContext().traceId;
      });
      const spans = exporter.getFinishedSpans();
      const root = spans.find((s) => s.name === 'POST /v1/predictions');
      for (const name of ['feature_flag.evaluation delay-model', 'weather.lookup', 'model.inference']) {
        const child = spans.find((s) => s.name === name);
        expect(child, name).toBeDefined();
        expect(child?.spanContext().traceId).toBe(traceId);
        expect(child?.parentSpanContext?.spanId).toBe(root?.spanContext().spanId);
      }
      // The booking's evaluation, under the feature-flag conventions, on the flag step's span.
      const flagStep = spans.find((s) => s.name === 'feature_flag.evaluation delay-model');
      expect(flagStep?.events.map((e) => [e.name, e.attributes?.['feature_flag.key']])).toEqual([
        ['feature_flag.evaluation', 'delay-model'],
      ]);
      expect(flagStep?.events[0]?.attributes?.['feature_flag.result.variant']).toBe('gbt-v2');
      expect(spans.find((s) => s.name === 'model.inference')?.attributes).toMatchObject({
        'delay.model_version': 'gbt-v2',
        'delay.bookings': 1,
      });
      expect(rows[0]?.traceId).toBe(traceId);
      expect(trace.getActiveSpan()).toBeUndefined();
    } finally {
      await t.close();
    }
  });
});
