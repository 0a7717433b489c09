import { context, type Span, SpanStatusCode, TraceFlags, trace } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import {
  BasicTracerProvider,
  InMemorySpanExporter,
  SimpleSpanProcessor,
} from '@opentelemetry/sdk-trace-base';
import { afterAll, describe, expect, it } from 'vitest';
import { inSpan } from './spans.js';

context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
afterAll(() => {
  context.disable();
});

function recorder() {
  const exporter = new InMemorySpanExporter();
  const provider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] });
  return { exporter, tracer: provider.getTracer('test') };
}

const activeSpanId = async () => trace.getActiveSpan()?.spanContext().spanId;

describe('inSpan', () => {
  it('runs the work in a child span of a recording parent, and marks the span of a failed work', async () => {
    const { exporter, tracer } = recorder();
    const parent = tracer.startSpan('request');
    const inner = await context.with(trace.setSpan(context.active(), parent), () =>
      inSpan(tracer, 'step', { n: 1 }, activeSpanId),
    );
    await expect(
      context.with(trace.setSpan(context.active(), parent), () =>
        inSpan(tracer, 'failing step', {}, async () => {
          throw new Error('no answer');
        }),
      ),
    ).rejects.toThrow('no answer');
    parent.end();

    const [step, failing] = exporter.getFinishedSpans();
    expect(step?.name).toBe('step');
    expect(step?.spanContext().spanId).toBe(inner);
    expect(step?.parentSpanContext?.spanId).toBe(parent.spanContext().spanId);
    expect(step?.attributes).toEqual({ n: 1 });
    expect(failing?.status).toEqual({ code: SpanStatusCode.ERROR, message: 'no answer' });
  });

  it('runs the work as it is under a parent that is not recording: no child span is made', async () => {
    const { exporter, tracer } = recorder();
    const unsampled: Span = trace.wrapSpanContext({
      traceId: '0af7651916cd43dd8448eb211c80319c',
      spanId: 'b7ad6b7169203331',
      traceFlags: TraceFlags.NONE,
    });
    const inner = await context.with(trace.setSpan(context.active(), unsampled), () =>
      inSpan(tracer, 'step', {}, activeSpanId),
    );
    expect(inner).toBe('b7ad6b7169203331');
    await expect(
      context.with(trace.setSpan(context.active(), unsampled), () =>
        inSpan(tracer, 'failing step', {}, async () => {
          throw new Error('no answer');
        }),
      ),
    ).rejects.toThrow('no answer');
    expect(exporter.getFinishedSpans()).toEqual([]);
  });

  it('runs the work in a child span of a sampled remote parent (a caller that samples the trace)', async () => {
    const { exporter, tracer } = recorder();
    const remote = trace.wrapSpanContext({
      traceId: '0af7651916cd43dd8448eb211c80319c',
      spanId: 'b7ad6b7169203331',
      traceFlags: TraceFlags.SAMPLED,
      isRemote: true,
    });
    const inner = await context.with(trace.setSpan(context.active(), remote), () =>
      inSpan(tracer, 'step', {}, activeSpanId),
    );
    const [step] = exporter.getFinishedSpans();
    expect(step?.spanContext().spanId).toBe(inner);
    expect(step?.parentSpanContext?.spanId).toBe('b7ad6b7169203331');
  });

  it('starts a root span when there is no parent', async () => {
    const { exporter, tracer } = recorder();
    const inner = await inSpan(tracer, 'flush', {}, activeSpanId);
    const [flush] = exporter.getFinishedSpans();
    expect(flush?.spanContext().spanId).toBe(inner);
    expect(flush?.parentSpanContext).toBeUndefined();
  });
});
