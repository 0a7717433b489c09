import { mkdtempSync, renameSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { trace } from '@opentelemetry/api';
import { MeterProvider, MetricReader } from '@opentelemetry/sdk-metrics';
import pino from 'pino';
import { type AppDeps, createApp } from '../app.js';
import { type FlagService, startFlagService } from '../flags/flag-service.js';
import type { ModelRegistry } from '../models/model-registry.js';
import { createServiceMetrics } from '../telemetry/service-metrics.js';
import { neutralWeatherProvider } from '../weather/weather.js';

/** A metric reader the test pulls from, so assertions see exactly what /metrics would show. */
class CollectingReader extends MetricReader {
  protected override async onShutdown() {}
  protected override async onForceFlush() {}
}

/** A meter the test reads back: `value` sums what /metrics would show. */
export function testMeter() {
  const reader = new CollectingReader();
  const provider = new MeterProvider({ readers: [reader] });
  const meter = provider.getMeter('test');
  /** Sum of a counter's (or histogram's count of) data points whose attributes include `attrs`. */
  async function value(name: string, attrs: Record<string, string> = {}): Promise<number> {
    const { resourceMetrics } = await reader.collect();
    let total = 0;
    for (const scope of resourceMetrics.scopeMetrics) {
      for (const metric of scope.metrics) {
        if (metric.descriptor.name !== name) continue;
        for (const point of metric.dataPoints) {
          if (!Object.entries(attrs).every(([k, v]) => point.attributes[k] === v)) continue;
          const v = point.value as number | { count: number };
          total += typeof v === 'number' ? v : v.count;
        }
      }
    }
    return total;
  }
  return { meter, value };
}

export function testMetrics() {
  const { meter, value } = testMeter();
  return { metrics: createServiceMetrics(meter), value };
}

export const silentLogger = pino({ level: 'silent' });

export interface FlagsSpec {
  mlWeight?: number;
  modelVersion?: string;
  fallbackOnError?: boolean;
  weatherEnrichment?: boolean;
}

export function flagsDocument({
  mlWeight = 10,
  modelVersion = 'gbt-v2',
  fallbackOnError = true,
  weatherEnrichment = true,
}: FlagsSpec = {}) {
  const onOff = (on: boolean) => ({
    state: 'ENABLED',
    variants: { on: true, off: false },
    defaultVariant: on ? 'on' : 'off',
  });
  return {
    $schema: 'https://flagd.dev/schema/v0/flags.json',
    flags: {
      'delay-model': {
        state: 'ENABLED',
        variants: { heuristic: 'heuristic', [modelVersion]: modelVersion },
        defaultVariant: 'heuristic',
        targeting: {
          fractional: [
            [modelVersion, mlWeight],
            ['heuristic', 100 - mlWeight],
          ],
        },
      },
      'ml-fallback-on-error': onOff(fallbackOnError),
      'weather-enrichment': onOff(weatherEnrichment),
    },
  };
}

/** A flag file with the delay-model weights given as strings: flagd's schema refuses it, flagd-core alone would
 * load it (and route every booking to the default variant). */
export function quotedWeightsDocument(mlWeight: number) {
  const doc = flagsDocument({ mlWeight });
  doc.flags['delay-model'].targeting = {
    fractional: [
      ['gbt-v2', String(mlWeight)],
      ['heuristic', String(100 - mlWeight)],
    ],
  };
  return doc;
}

export function tempDir(prefix = 'delay-test-') {
  return mkdtempSync(join(tmpdir(), prefix));
}

/** Writes a flag file the way every writer should: a temp file renamed over the target. */
export function writeFlags(file: string, content: string | object) {
  const tmp = `${file}.tmp`;
  writeFileSync(tmp, typeof content === 'string' ? content : JSON.stringify(content, null, 2));
  renameSync(tmp, file);
}

/** A `flags.json` in `dir` holding `flagsDocument(spec)`; returns its path. */
export function flagsFile(spec: FlagsSpec = {}, dir = tempDir()) {
  const file = join(dir, 'flags.json');
  writeFlags(file, flagsDocument(spec));
  return file;
}

export async function flagServiceOn(spec: FlagsSpec = {}, metrics = testMetrics().metrics) {
  const file = flagsFile(spec);
  const flags = await startFlagService({
    flags: { kind: 'file', file, pollIntervalMs: 50 },
    logger: silentLogger,
    metrics,
  });
  return { file, flags };
}

export const emptyRegistry: ModelRegistry = {
  ready: () => true,
  versions: () => [],
  lookup: (version) => ({ ok: false, reason: 'model_unavailable', detail: `no model ${version}` }),
};

export async function testApp(
  options: { flags?: FlagsSpec; deps?: Partial<Omit<AppDeps, 'metrics'>>; bodyLimitBytes?: number } = {},
) {
  const m = testMetrics();
  let flags: FlagService | undefined = options.deps?.flags;
  let file: string | undefined;
  if (!flags) ({ flags, file } = await flagServiceOn(options.flags, m.metrics));
  const app = createApp({
    flags,
    models: emptyRegistry,
    weather: neutralWeatherProvider(),
    logger: silentLogger,
    limits: { bodyLimitBytes: options.bodyLimitBytes ?? 1024 * 1024, batchMaxBookings: 1000 },
    tracer: trace.getTracer('test'),
    ...options.deps,
    metrics: m.metrics,
  });
  return { app, flags, file, metricValue: m.value, close: () => flags.close() };
}

export function booking(overrides: Record<string, unknown> = {}) {
  return {
    booking_id: 'bk-1',
    scheduled_at: '2026-11-25T08:15:00+01:00',
    pickup: { lat: 48.8566, lon: 2.3522 },
    dropoff: { lat: 48.8867, lon: 2.3431 },
    ...overrides,
  };
}

export function postJson(
  app: { request: (path: string, init: RequestInit) => Response | Promise<Response> },
  path: string,
  body: unknown,
) {
  return app.request(path, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
}

/** Polls until `check` passes and returns that result; past the timeout it throws, with the last result. */
export async function eventually<T>(
  probe: () => T | Promise<T>,
  check: (value: T) => boolean,
  timeoutMs = 10_000,
) {
  const deadline = Date.now() + timeoutMs;
  let value = await probe();
  while (!check(value)) {
    if (Date.now() >= deadline) {
      throw new Error(
        `condition not met within ${timeoutMs} ms; last value: ${JSON.stringify(value)?.slice(0, 500)}`,
      );
    }
    await new Promise((r) => setTimeout(r, 50));
    value = await probe();
  }
  return value;
}
