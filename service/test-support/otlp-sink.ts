import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';

type Attributes = Record<string, string | number | boolean>;

export interface ExportedSpan {
  traceId: string;
  spanId: string;
  parentSpanId?: string;
  name: string;
  /** OTLP's numbering: 1 internal, 2 server, 3 client. */
  kind: number;
  attributes: Attributes;
  /** The attributes of the resource that exported it. */
  resource: Attributes;
  events: { name: string; attributes: Attributes }[];
}

interface OtlpKeyValue {
  key: string;
  value: { stringValue?: string; intValue?: string | number; doubleValue?: number; boolValue?: boolean };
}
interface OtlpSpan {
  traceId: string;
  spanId: string;
  parentSpanId?: string;
  name: string;
  kind: number;
  attributes?: OtlpKeyValue[];
  events?: { name: string; attributes?: OtlpKeyValue[] }[];
}
interface OtlpJsonTraces {
  resourceSpans?: { resource?: { attributes?: OtlpKeyValue[] }; scopeSpans?: { spans?: OtlpSpan[] }[] }[];
}

const decode = (kvs: OtlpKeyValue[] = []): Attributes =>
  Object.fromEntries(
    kvs.map(({ key, value }) => [
      key,
      value.stringValue ??
        (value.intValue === undefined ? undefined : Number(value.intValue)) ??
        value.doubleValue ??
        value.boolValue ??
        '',
    ]),
  );

/**
 * Accepts OTLP/HTTP (JSON) trace exports, so the service's tracing runs as in production. `keepSpans` also
 * keeps and decodes them (tests: `spans()`, `exportedText()`); the benchmark only counts, to leave the CPU to
 * the load generator.
 */
export async function startOtlpSink({ keepSpans = false }: { keepSpans?: boolean } = {}) {
  let exports = 0;
  let bytes = 0;
  const spans: ExportedSpan[] = [];
  const bodies: string[] = [];
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => {
      bytes += chunk.length;
      if (keepSpans) chunks.push(chunk);
    });
    req.on('end', () => {
      if (req.url === '/v1/traces') {
        exports += 1;
        if (keepSpans) {
          const text = Buffer.concat(chunks).toString('utf8');
          bodies.push(text);
          const body = JSON.parse(text) as OtlpJsonTraces;
          for (const { resource, scopeSpans } of body.resourceSpans ?? [])
            for (const scope of scopeSpans ?? [])
              for (const span of scope.spans ?? [])
                spans.push({
                  traceId: span.traceId,
                  spanId: span.spanId,
                  ...(span.parentSpanId ? { parentSpanId: span.parentSpanId } : {}),
                  name: span.name,
                  kind: span.kind,
                  attributes: decode(span.attributes),
                  resource: decode(resource?.attributes),
                  events: (span.events ?? []).map((e) => ({
                    name: e.name,
                    attributes: decode(e.attributes),
                  })),
                });
        }
      }
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end('{}');
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    stats: () => ({ exports, bytes }),
    spans: () => spans,
    /** Every export as received (OTLP JSON), attributes and all; empty without `keepSpans`. */
    exportedText: () => bodies.join('\n'),
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
