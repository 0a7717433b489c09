import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface ExportedSpan {
  traceId: string;
  name: string;
}

interface OtlpJsonTraces {
  resourceSpans?: { scopeSpans?: { spans?: ExportedSpan[] }[] }[];
}

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
          for (const resource of body.resourceSpans ?? [])
            for (const scope of resource.scopeSpans ?? [])
              for (const { traceId, name } of scope.spans ?? []) spans.push({ traceId, name });
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
