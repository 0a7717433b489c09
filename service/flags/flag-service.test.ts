import { readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { context, TraceFlags, trace } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import {
  BasicTracerProvider,
  InMemorySpanExporter,
  SimpleSpanProcessor,
} from '@opentelemetry/sdk-trace-base';
import fc from 'fast-check';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { bookingRefs } from '../privacy/booking-ref.js';
import { startFlagdStandIn } from '../test-support/flagd-stand-in.js';
import {
  eventually,
  flagServiceOn,
  flagsDocument,
  flagsFile,
  quotedWeightsDocument,
  silentLogger,
  tempDir,
  testMetrics,
  writeFlags,
} from '../test-support/harness.js';
import { FlagFileError, type FlagService, MAX_FLAG_FILE_BYTES, startFlagService } from './flag-service.js';

/** A valid flag document whose delay-model flag `edit` changes. */
function withDelayModel(edit: (flag: Record<string, unknown>) => void) {
  const doc = flagsDocument({ mlWeight: 10 });
  edit(doc.flags['delay-model'] as unknown as Record<string, unknown>);
  return doc;
}

function brokenDefault() {
  const doc = flagsDocument({ mlWeight: 0 });
  doc.flags['weather-enrichment'].defaultVariant = 'missing';
  return doc;
}

const ids = Array.from({ length: 10_000 }, (_, i) => `booking-${i}`);
const open: FlagService[] = [];
afterEach(async () => {
  await Promise.all(open.splice(0).map((f) => f.close()));
});

async function started(...args: Parameters<typeof flagServiceOn>) {
  const result = await flagServiceOn(...args);
  open.push(result.flags);
  return result;
}

async function mlCohort(flags: FlagService) {
  const variants = await Promise.all(ids.map((id) => flags.modelVariant(id)));
  return new Set(ids.filter((_, i) => variants[i]?.variant !== 'heuristic'));
}

describe('fractional routing on the booking id', () => {
  it('sends 10 ± 1% of 10,000 bookings to ML at 10%', async () => {
    const { flags } = await started({ mlWeight: 10 });
    const share = (await mlCohort(flags)).size / ids.length;
    expect(share).toBeGreaterThanOrEqual(0.09);
    expect(share).toBeLessThanOrEqual(0.11);
  });

  it('gives the same booking the same variant every time, in every instance', async () => {
    const a = await started({ mlWeight: 50 });
    const b = await started({ mlWeight: 50 });
    const sample = ids.slice(0, 500);
    const first = await Promise.all(sample.map((id) => a.flags.modelVariant(id)));
    const again = await Promise.all(sample.map((id) => a.flags.modelVariant(id)));
    const other = await Promise.all(sample.map((id) => b.flags.modelVariant(id)));
    expect(again).toEqual(first);
    expect(other).toEqual(first);
    expect(new Set(first.map((v) => v.variant))).toEqual(new Set(['heuristic', 'gbt-v2']));
  });

  it('keeps every booking of the 10% cohort on ML when the rollout rises to 25%', async () => {
    const at10 = await mlCohort((await started({ mlWeight: 10 })).flags);
    const at25 = await mlCohort((await started({ mlWeight: 25 })).flags);
    expect(at25.size / ids.length).toBeGreaterThan(0.23);
    expect(at25.size / ids.length).toBeLessThan(0.27);
    expect([...at10].filter((id) => !at25.has(id))).toEqual([]);
  });
});

describe('evaluations in a trace', () => {
  context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
  afterAll(() => {
    context.disable();
  });

  it('add one feature_flag.evaluation event per booking to the active span, none to a span that does not record', async () => {
    const bookingRef = bookingRefs('flag-service-test-key-0123');
    const flags = await startFlagService({
      flags: { kind: 'file', file: flagsFile({ mlWeight: 100 }), pollIntervalMs: 50 },
      logger: silentLogger,
      metrics: testMetrics().metrics,
      bookingRef,
    });
    open.push(flags);
    const exporter = new InMemorySpanExporter();
    const tracer = new BasicTracerProvider({
      spanProcessors: [new SimpleSpanProcessor(exporter)],
    }).getTracer('test');
    await tracer.startActiveSpan('assign', async (span) => {
      await Promise.all(['bk-1', 'bk-2'].map((id) => flags.modelVariant(id)));
      span.end();
    });
    const unsampled = trace.wrapSpanContext({
      traceId: '0af7651916cd43dd8448eb211c80319c',
      spanId: 'b7ad6b7169203331',
      traceFlags: TraceFlags.NONE,
    });
    const unrecorded = await context.with(trace.setSpan(context.active(), unsampled), () =>
      flags.modelVariant('bk-3'),
    );
    expect(unrecorded.variant).toBe('gbt-v2');

    const [assign] = exporter.getFinishedSpans();
    expect(assign?.events.map((e) => e.name)).toEqual(['feature_flag.evaluation', 'feature_flag.evaluation']);
    expect(assign?.events[0]?.attributes).toMatchObject({
      'feature_flag.key': 'delay-model',
      'feature_flag.result.variant': 'gbt-v2',
      'feature_flag.provider.name': 'flagd',
      // The booking's pseudonym (docs/privacy.md); the split is still the id's (fractional routing, above).
      'feature_flag.context.id': bookingRef('bk-1'),
    });
    expect(assign?.events[0]?.attributes?.['error.type']).toBeUndefined();
  });
});

describe('flag file changes while running', () => {
  it('applies a new valid file and reports when it changed', async () => {
    const { flags, file } = await started({ mlWeight: 10 });
    const before = flags.status();
    expect(before).toMatchObject({
      ml_enabled: true,
      ml_percentage: 10,
      model_versions: ['gbt-v2'],
      last_error: null,
    });

    writeFlags(file, flagsDocument({ mlWeight: 0 }));
    const after = await eventually(
      () => flags.status(),
      (s) => s.ml_percentage === 0,
    );
    expect(after.ml_enabled).toBe(false);
    expect(Date.parse(after.last_changed_at as string)).toBeGreaterThan(
      Date.parse(before.last_changed_at as string),
    );
    // The provider reloads on the same poll: routing follows the file.
    const cohort = await eventually(
      () => mlCohort(flags),
      (c) => c.size === 0,
    );
    expect(cohort.size).toBe(0);
  });

  it.each([
    ['truncated JSON', '{"flags": {"delay-model": '],
    ['a flag whose default variant does not exist', brokenDefault()],
    ['fractional weights given as strings', quotedWeightsDocument(100)],
  ])('keeps the last good configuration on %s, logs and counts it', async (_name, bad) => {
    const m = testMetrics();
    const { flags, file } = await started({ mlWeight: 100 }, m.metrics);
    expect((await flags.modelVariant('booking-1')).variant).toBe('gbt-v2');

    writeFlags(file, bad);
    const status = await eventually(
      () => flags.status(),
      (s) => s.last_error !== null,
    );
    expect(status.last_error?.message).toContain(file);
    expect(status.ml_percentage).toBe(100);
    expect(await m.value('delay.flags.config_errors', { source: 'file' })).toBe(1);
    // Several polls later the provider still routes with the last good file.
    await new Promise((r) => setTimeout(r, 300));
    expect((await flags.modelVariant('booking-1')).variant).toBe('gbt-v2');
    expect(flags.ready()).toBe(true);

    writeFlags(file, flagsDocument({ mlWeight: 0 }));
    const recovered = await eventually(
      () => flags.status(),
      (s) => s.ml_percentage === 0,
    );
    expect(recovered.last_error).toBeNull();
  });
});

describe('the ML share reported is the share routed', () => {
  /** Percent of `sample` bookings the service routes to a model. */
  async function routedShare(flags: FlagService, sample: string[]) {
    const variants = await Promise.all(sample.map((id) => flags.modelVariant(id)));
    return (variants.filter((v) => v.variant !== 'heuristic').length / sample.length) * 100;
  }

  // Weights as an operator or a script might write them: none, small, around flagd's 2^31 - 1 total, negative,
  // fractional; with a default variant that is the heuristic, a model, or missing.
  const weight = fc.oneof(
    fc.constant(0),
    fc.integer({ min: 0, max: 100 }),
    fc.integer({ min: 2 ** 30, max: 2 ** 31 }),
    fc.integer({ min: -100, max: -1 }),
    fc.double({ min: 0.1, max: 99.9, noNaN: true }),
    fc.constant(undefined),
  );
  const bucket = (variant: string) => weight.map((w) => (w === undefined ? [variant] : [variant, w]));
  const delayModelFlag = fc.record({
    state: fc.constantFrom('ENABLED', 'ENABLED', 'ENABLED', 'DISABLED'),
    defaultVariant: fc.constantFrom('heuristic', 'gbt-v2', 'gbt-v3', undefined),
    targeting: fc.oneof(
      fc.tuple(bucket('gbt-v2'), bucket('heuristic')).map((b) => ({ fractional: b })),
      fc.tuple(bucket('gbt-v2'), bucket('gbt-v3'), bucket('heuristic')).map((b) => ({ fractional: b })),
      fc.constant(undefined),
    ),
  });

  it('for every flag file the service accepts, over generated weights and defaults', async () => {
    const sample = ids.slice(0, 2_000);
    const seen = { accepted: 0, refused: 0 };
    await fc.assert(
      fc.asyncProperty(delayModelFlag, async (generated) => {
        const doc = flagsDocument({ mlWeight: 10 });
        const flag = doc.flags['delay-model'] as unknown as Record<string, unknown>;
        Object.assign(flag, generated, {
          variants: { heuristic: 'heuristic', 'gbt-v2': 'gbt-v2', 'gbt-v3': 'gbt-v3' },
        });
        const file = join(tempDir(), 'flags.json');
        writeFlags(file, doc);
        let flags: FlagService;
        try {
          flags = await startFlagService({
            flags: { kind: 'file', file, pollIntervalMs: 60_000 },
            logger: silentLogger,
            metrics: testMetrics().metrics,
          });
        } catch (err) {
          expect(err).toBeInstanceOf(FlagFileError);
          seen.refused += 1;
          return;
        }
        try {
          seen.accepted += 1;
          const reported = flags.status().ml_percentage;
          expect(reported).not.toBeNull();
          // 2,000 bookings: a binomial share within 5 points of the true one by over 4 standard deviations.
          expect(Math.abs((reported as number) - (await routedShare(flags, sample)))).toBeLessThan(5);
        } finally {
          await flags.close();
        }
      }),
      {
        numRuns: 60,
        examples: [
          [
            {
              state: 'ENABLED',
              defaultVariant: 'gbt-v2',
              targeting: {
                fractional: [
                  ['gbt-v2', 0],
                  ['heuristic', 0],
                ],
              },
            },
          ],
          [
            {
              state: 'ENABLED',
              defaultVariant: 'gbt-v2',
              targeting: {
                fractional: [
                  ['gbt-v2', 2 ** 31],
                  ['heuristic', 2 ** 31],
                ],
              },
            },
          ],
          [{ state: 'ENABLED', defaultVariant: undefined, targeting: undefined }],
        ],
      },
    );
    // Both sides of the property were tried.
    expect(seen.accepted).toBeGreaterThan(5);
    expect(seen.refused).toBeGreaterThan(5);
  }, 60_000);

  it.each([
    [
      'weights 0/0 with a model as the default variant',
      withDelayModel((flag) => {
        flag.defaultVariant = 'gbt-v2';
        flag.targeting = {
          fractional: [
            ['gbt-v2', 0],
            ['heuristic', 0],
          ],
        };
      }),
      'add up to 0',
    ],
    [
      'weights adding up past 2^31 - 1',
      withDelayModel((flag) => {
        flag.defaultVariant = 'gbt-v2';
        flag.targeting = {
          fractional: [
            ['gbt-v2', 2 ** 31 - 1],
            ['heuristic', 2 ** 31 - 1],
          ],
        };
      }),
      'add up to 4294967294',
    ],
    [
      'a negative weight',
      withDelayModel((flag) => {
        flag.targeting = {
          fractional: [
            ['gbt-v2', 100],
            ['heuristic', -100],
          ],
        };
      }),
      "flagd's schema",
    ],
    [
      'weights that are not whole numbers',
      withDelayModel((flag) => {
        flag.defaultVariant = 'gbt-v2';
        flag.targeting = {
          fractional: [
            ['gbt-v2', 0.5],
            ['heuristic', 99.5],
          ],
        };
      }),
      "flagd's schema",
    ],
  ])(
    'refuses %s while running: status and routing stay on the last good split, counted',
    async (_name, bad, reason) => {
      const m = testMetrics();
      const { flags, file } = await started({ mlWeight: 40 }, m.metrics);
      const sample = ids.slice(0, 2_000);
      writeFlags(file, bad);
      const status = await eventually(
        () => flags.status(),
        (s) => s.last_error !== null,
      );
      expect(status.last_error?.message).toContain(reason);
      expect(await m.value('delay.flags.config_errors', { source: 'file' })).toBe(1);
      await new Promise((r) => setTimeout(r, 300));
      expect(flags.status().ml_percentage).toBe(40);
      const routed = await routedShare(flags, sample);
      expect(routed).toBeGreaterThan(35);
      expect(routed).toBeLessThan(45);
    },
  );

  it('in flagd-server mode, reports an unknown share while flagd serves a split this service refuses', async () => {
    const file = join(tempDir(), 'flags.json');
    writeFlags(file, flagsDocument({ mlWeight: 0 }));
    const flagd = await startFlagdStandIn(file);
    try {
      const m = testMetrics();
      const flags = await startFlagService({
        flags: { kind: 'flagd', host: flagd.host, port: flagd.port, pollIntervalMs: 1000 },
        logger: silentLogger,
        metrics: m.metrics,
      });
      open.push(flags);
      expect(flags.status().ml_percentage).toBe(0);
      writeFlags(
        file,
        withDelayModel((flag) => {
          flag.defaultVariant = 'gbt-v2';
          flag.targeting = {
            fractional: [
              ['gbt-v2', 0],
              ['heuristic', 0],
            ],
          };
        }),
      );
      const status = await eventually(
        () => flags.status(),
        (s) => s.last_error !== null,
      );
      expect(status).toMatchObject({ ml_percentage: null, ml_enabled: null, split: null });
      expect(status.last_error?.message).toContain('add up to 0');
      expect(await m.value('delay.flags.config_errors', { source: 'flagd' })).toBe(1);
      // flagd's configuration is what the provider routes on: every booking to the default variant.
      await eventually(
        () => routedShare(flags, ids.slice(0, 500)),
        (share) => share === 100,
      );
    } finally {
      await flagd.close();
    }
  });
});

describe('flag service and an oversized file', () => {
  it('refuses a flag file over the size limit without parsing it, and keeps the last good configuration', async () => {
    const { flags, file } = await started({ mlWeight: 40 });
    const doc = flagsDocument({ mlWeight: 0 }) as Record<string, unknown>;
    writeFlags(file, { ...doc, padding: 'x'.repeat(MAX_FLAG_FILE_BYTES) });
    const status = await eventually(
      () => flags.status(),
      (s) => s.last_error !== null,
    );
    expect(status.last_error?.message).toContain('over the 1048576-byte limit');
    expect(status.ml_percentage).toBe(40);
  });
});

describe('flag service after a failed read', () => {
  it('clears last_error when the file comes back with the content it had', async () => {
    const { flags, file } = await started({ mlWeight: 40 });
    const text = readFileSync(file, 'utf8');
    rmSync(file);
    await eventually(
      () => flags.status().last_error,
      (e) => e !== null,
    );
    writeFlags(file, text);
    await eventually(
      () => flags.status().last_error,
      (e) => e === null,
    );
    expect(flags.status().ml_percentage).toBe(40);
  });
});

describe('flag service at start', () => {
  it('names the file and the reason when the file is invalid', async () => {
    const file = join(tempDir(), 'flags.json');
    writeFlags(file, '{"flags": 1}');
    const start = startFlagService({
      flags: { kind: 'file', file, pollIntervalMs: 50 },
      logger: silentLogger,
      metrics: testMetrics().metrics,
    });
    await expect(start).rejects.toThrow(FlagFileError);
    await expect(start).rejects.toThrow(
      `flag file ${file}: rejected by flagd's schema: /flags must be object`,
    );
  });

  it('names the file when it does not exist', async () => {
    const file = join(tempDir(), 'absent.json');
    await expect(
      startFlagService({
        flags: { kind: 'file', file, pollIntervalMs: 50 },
        logger: silentLogger,
        metrics: testMetrics().metrics,
      }),
    ).rejects.toThrow(`flag file ${file}: ENOENT`);
  });
});

describe('global switches', () => {
  it('follow the file: weather-enrichment and ml-fallback-on-error are re-read on change', async () => {
    const { flags, file } = await started({ weatherEnrichment: true, fallbackOnError: true });
    expect(flags.weatherEnrichment()).toBe(true);
    expect(flags.fallbackOnError()).toBe(true);
    writeFlags(file, flagsDocument({ weatherEnrichment: false, fallbackOnError: false }));
    await eventually(
      () => flags.weatherEnrichment(),
      (on) => !on,
    );
    expect(flags.weatherEnrichment()).toBe(false);
    expect(flags.fallbackOnError()).toBe(false);
  });
});

describe('change listeners', () => {
  it('hears about a new model variant in the file', async () => {
    const { flags, file } = await started({ mlWeight: 10 });
    const seen: (string[] | null)[] = [];
    flags.onChange(() => seen.push(flags.status().model_variants));
    writeFlags(file, flagsDocument({ mlWeight: 10, modelVersion: 'gbt-v3' }));
    const last = await eventually(
      () => seen.at(-1),
      (v) => v?.includes('gbt-v3') ?? false,
    );
    expect(last).toEqual(['gbt-v3']);
  });
});

describe('flagd-server mode (FLAGD_HOST), against a stand-in speaking flagd sync protocol', () => {
  it('reports the split flagd serves, routes on it, and follows a change pushed by flagd', async () => {
    const file = join(tempDir(), 'flags.json');
    writeFlags(file, flagsDocument({ mlWeight: 50 }));
    const flagd = await startFlagdStandIn(file);
    try {
      const flags = await startFlagService({
        flags: { kind: 'flagd', host: flagd.host, port: flagd.port, pollIntervalMs: 1000 },
        logger: silentLogger,
        metrics: testMetrics().metrics,
      });
      open.push(flags);
      let changes = 0;
      flags.onChange(() => {
        changes += 1;
      });
      expect(flags.status()).toMatchObject({
        source: { kind: 'flagd', host: flagd.host, port: flagd.port },
        ml_enabled: true,
        ml_percentage: 50,
        model_variants: ['gbt-v2'],
        split: [
          { variant: 'gbt-v2', weight: 50 },
          { variant: 'heuristic', weight: 50 },
        ],
        last_error: null,
      });
      const share = (await mlCohort(flags)).size / ids.length;
      expect(share).toBeGreaterThan(0.45);
      expect(share).toBeLessThan(0.55);

      writeFlags(file, flagsDocument({ mlWeight: 0 }));
      await eventually(
        () => flags.status().ml_percentage,
        (p) => p === 0,
      );
      expect(changes).toBeGreaterThan(0);
      await eventually(
        async () => (await mlCohort(flags)).size,
        (n) => n === 0,
      );
    } finally {
      await flagd.close();
    }
  });
});
