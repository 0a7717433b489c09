import { createServer, type IncomingHttpHeaders } from 'node:http';
import type { AddressInfo } from 'node:net';
import { context, propagation, SpanKind } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { W3CTraceContextPropagator } from '@opentelemetry/core';
import {
  BasicTracerProvider,
  InMemorySpanExporter,
  SimpleSpanProcessor,
} from '@opentelemetry/sdk-trace-base';
import { afterAll, describe, expect, it } from 'vitest';
import { fetchInstrumentation, incomingQueryAttributes, redactedUrl } from './otel.js';

context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
propagation.setGlobalPropagator(new W3CTraceContextPropagator());
const exporter = new InMemorySpanExporter();
const provider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] });
const tracer = provider.getTracer('test');
// The instrumentation the service registers, on a provider the test reads.
const instrumentation = fetchInstrumentation();
instrumentation.setTracerProvider(provider);

const received: IncomingHttpHeaders[] = [];
const server = createServer((req, res) => {
  received.push(req.headers);
  res.writeHead(req.url?.startsWith('/missing') ? 404 : 200, { 'content-type': 'application/json' });
  res.end('{}');
});
await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
const { port } = server.address() as AddressInfo;

afterAll(async () => {
  instrumentation.disable();
  context.disable();
  propagation.disable();
  await new Promise((resolve) => server.close(resolve));
});

describe('outgoing fetch', () => {
  it('is a client span under the caller, whose traceparent the server receives', async () => {
    exporter.reset();
    received.length = 0;
    const caller = await tracer.startActiveSpan('weather.lookup', async (span) => {
      const res = await fetch(`http://127.0.0.1:${port}/data/2.5/weather?lat=48.8&lon=2.3&appid=secret-key`);
      await res.text();
      span.end();
      return span.spanContext();
    });
    const [, traceId, parentId, flags] = String(received[0]?.traceparent).split('-');
    expect(traceId).toBe(caller.traceId);
    expect(flags).toBe('01');

    const client = exporter.getFinishedSpans().find((s) => s.kind === SpanKind.CLIENT);
    expect(client?.spanContext().spanId).toBe(parentId);
    expect(client?.parentSpanContext?.spanId).toBe(caller.spanId);
    expect(client?.attributes).toMatchObject({
      'http.request.method': 'GET',
      'server.address': '127.0.0.1',
      'server.port': port,
      'url.full': `http://127.0.0.1:${port}/data/2.5/weather?lat=REDACTED&lon=REDACTED&appid=REDACTED`,
      'url.query': 'lat=REDACTED&lon=REDACTED&appid=REDACTED',
      'http.response.status_code': 200,
    });
    expect(JSON.stringify(client?.attributes)).not.toContain('secret-key');
  });

  it('marks an error answer with its status as error.type', async () => {
    exporter.reset();
    await (await fetch(`http://127.0.0.1:${port}/missing`)).text();
    const [client] = exporter.getFinishedSpans();
    expect(client?.attributes).toMatchObject({ 'http.response.status_code': 404, 'error.type': '404' });
  });

  it('makes no span and sends no traceparent where tracing is suppressed (the span exporter sending)', async () => {
    exporter.reset();
    received.length = 0;
    const { suppressTracing } = await import('@opentelemetry/core');
    await context.with(suppressTracing(context.active()), async () => {
      await (await fetch(`http://127.0.0.1:${port}/v1/traces`, { method: 'POST', body: '{}' })).text();
    });
    expect(exporter.getFinishedSpans()).toEqual([]);
    expect(received[0]?.traceparent).toBeUndefined();
  });
});

describe('redactedUrl', () => {
  it('keeps the origin, the path and the query keys, and no query value', () => {
    expect(redactedUrl(new URL('https://api.example/q?query=up%7Bjob%3D%22x%22%7D&a=1&a=2'))).toEqual({
      full: 'https://api.example/q?query=REDACTED&a=REDACTED',
      query: 'query=REDACTED&a=REDACTED',
    });
    expect(redactedUrl(new URL('http://k8s.local/apis/x'))).toEqual({
      full: 'http://k8s.local/apis/x',
      query: '',
    });
  });
});

describe('incomingQueryAttributes', () => {
  it("gives a served request's url.query its keys and no value (a booking id a caller put there)", () => {
    expect(incomingQueryAttributes('/v1/monitoring/predictions?limit=5&booking_id=B-1')).toEqual({
      'url.query': 'limit=REDACTED&booking_id=REDACTED',
    });
    expect(incomingQueryAttributes('/v1/predictions')).toEqual({});
    expect(incomingQueryAttributes('/v1/predictions?')).toEqual({});
    // Not a URL the parser takes whole: the query is still read as one.
    expect(incomingQueryAttributes('http://[::1/x?id=B-2')).toEqual({ 'url.query': 'id=REDACTED' });
  });
});
