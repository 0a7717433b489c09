import { readFileSync } from 'node:fs';
import { PerformanceObserver } from 'node:perf_hooks';
import { FlagdCore } from '@openfeature/flagd-core';
import { FlagdProvider } from '@openfeature/flagd-provider';
import { type FlagEvaluationOptions, OpenFeature } from '@openfeature/server-sdk';
import { context, TraceFlags, trace } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { BasicTracerProvider, NoopSpanProcessor } from '@opentelemetry/sdk-trace-base';
import { evaluationSpanEvents } from '../service/flags/evaluation-span-events.js';
import { bookingRefs, randomBookingRefKey } from '../service/privacy/booking-ref.js';
import { median } from './load.js';
import { microsPerUnit } from './timing.js';

/*
 * Cost of one delay-model evaluation at each layer: flagd-core's evaluator, the flagd provider, and the
 * OpenFeature client the service calls. Then the client as a single prediction calls it, inside an active span
 * of its own (a sampled trace: recording; an unsampled one: not), with and without the hook that adds the
 * evaluation event to that span (on the client; and as the service gives it, to recorded evaluations only),
 * alternating (BENCH_HOOK_ROUNDS rounds). Prints JSON: microseconds per
 * evaluation (median of 5 runs) and microseconds of garbage collection per evaluation (over the same runs), and
 * the hook's ratios.
 */
const file = process.argv[2] ?? 'flagd/flags.json';
const n = Number(process.env.BENCH_EVALUATIONS ?? 50_000);
const silent = { error() {}, warn() {}, info() {}, debug() {} };

const core = new FlagdCore(undefined, silent);
core.setConfigurations(readFileSync(file, 'utf8'));
const provider = new FlagdProvider({ resolverType: 'in-process', offlineFlagSourcePath: file }, silent);
await OpenFeature.setProviderAndWait('flag-eval-bench', provider);
const client = OpenFeature.getClient('flag-eval-bench');
const spanEvents = evaluationSpanEvents(bookingRefs(randomBookingRefKey()));
const hooked = OpenFeature.getClient('flag-eval-bench');
hooked.addHooks(spanEvents.hook);
// A hook that does nothing: what OpenFeature's hook stages cost by themselves.
const emptyHooked = OpenFeature.getClient('flag-eval-bench');
emptyHooked.addHooks({});

context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
// Spans are recorded (events kept) and go nowhere: the export is the trace pipeline's cost, not the hook's.
const tracer = new BasicTracerProvider({ spanProcessors: [new NoopSpanProcessor()] }).getTracer('bench');
const unsampled = trace.wrapSpanContext({
  traceId: '0af7651916cd43dd8448eb211c80319c',
  spanId: 'b7ad6b7169203331',
  traceFlags: TraceFlags.NONE,
});
/** One evaluation in a recording span of its own, as one booking's request span holds it. */
const inRecordingSpan =
  (c: typeof client, options?: () => FlagEvaluationOptions | undefined) => (key: string) =>
    tracer.startActiveSpan('assign', async (span) => {
      await c.getStringDetails('delay-model', 'heuristic', { targetingKey: key }, options?.());
      span.end();
    });
const inUnsampledSpan =
  (c: typeof client, options?: () => FlagEvaluationOptions | undefined) => (key: string) =>
    context.with(trace.setSpan(context.active(), unsampled), () =>
      c.getStringDetails('delay-model', 'heuristic', { targetingKey: key }, options?.()),
    );

/** Microseconds per evaluation (median of 5 runs after a warm-up), and of GC per evaluation over those runs. */
async function perEvaluation(evaluate: (key: string) => unknown) {
  const collections: { startTime: number; duration: number }[] = [];
  const gc = new PerformanceObserver((list) => collections.push(...list.getEntries()));
  gc.observe({ entryTypes: ['gc'] });
  let timedFrom = 0;
  const us = await microsPerUnit(n, async (run) => {
    if (run === 1) timedFrom = performance.now(); // run 0 warms up
    for (let i = 0; i < n; i++) await evaluate(`booking-${run}-${i}`);
  });
  // GC entries are delivered asynchronously: let the last ones arrive before summing.
  await new Promise((r) => setTimeout(r, 50));
  gc.disconnect();
  const gcMs = collections.filter((e) => e.startTime >= timedFrom).reduce((sum, e) => sum + e.duration, 0);
  return { us, gc_us: Math.round(((gcMs * 1000) / (5 * n)) * 100) / 100 };
}

const ROUNDS = Number(process.env.BENCH_HOOK_ROUNDS ?? 5);
type Measured = Awaited<ReturnType<typeof perEvaluation>>;
const alternating: Record<string, Measured[]> = {
  recording_span: [],
  recording_span_with_hook: [],
  recording_span_with_empty_hook: [],
  recording_span_as_the_service: [],
  unsampled_span: [],
  unsampled_span_with_hook: [],
  unsampled_span_as_the_service: [],
};
const variants: [string, (key: string) => unknown][] = [
  ['recording_span', inRecordingSpan(client)],
  ['recording_span_with_hook', inRecordingSpan(hooked)],
  ['recording_span_with_empty_hook', inRecordingSpan(emptyHooked)],
  ['recording_span_as_the_service', inRecordingSpan(client, spanEvents.options)],
  ['unsampled_span', inUnsampledSpan(client)],
  ['unsampled_span_with_hook', inUnsampledSpan(hooked)],
  ['unsampled_span_as_the_service', inUnsampledSpan(client, spanEvents.options)],
];
for (let round = 0; round < ROUNDS; round++) {
  // Every other round the other way round: neither variant always runs second.
  for (const [name, evaluate] of round % 2 ? [...variants].reverse() : variants)
    alternating[name]?.push(await perEvaluation(evaluate));
}
const medianOf = (rs: Measured[]) => ({
  us: median(rs.map((r) => r.us)),
  gc_us: median(rs.map((r) => r.gc_us)),
  rounds_us: rs.map((r) => r.us),
});
const hook = Object.fromEntries(Object.entries(alternating).map(([k, rs]) => [k, medianOf(rs)]));
/** The hook's cost as the median of each round's ratio: a round measures both back to back, under the same load. */
const ratio = (a: string, b: string) => {
  const withHook = alternating[a] ?? [];
  const withoutHook = alternating[b] ?? [];
  return Math.round(median(withHook.map((r, i) => r.us / (withoutHook[i]?.us ?? 1))) * 1000) / 1000;
};

const result = {
  evaluations_per_run: n,
  client_in_a_span_of_its_own: {
    rounds: ROUNDS,
    ...hook,
    ratio_with_hook_recording: ratio('recording_span_with_hook', 'recording_span'),
    ratio_with_empty_hook_recording: ratio('recording_span_with_empty_hook', 'recording_span'),
    ratio_with_hook_unsampled: ratio('unsampled_span_with_hook', 'unsampled_span'),
    ratio_as_the_service_recording: ratio('recording_span_as_the_service', 'recording_span'),
    ratio_as_the_service_unsampled: ratio('unsampled_span_as_the_service', 'unsampled_span'),
  },
  flagd_core: await perEvaluation((key) =>
    core.resolveStringEvaluation('delay-model', 'heuristic', { targetingKey: key }, silent),
  ),
  flagd_provider: await perEvaluation((key) =>
    provider.resolveStringEvaluation('delay-model', 'heuristic', { targetingKey: key }, silent),
  ),
  openfeature_client: await perEvaluation((key) =>
    client.getStringDetails('delay-model', 'heuristic', { targetingKey: key }),
  ),
};
await OpenFeature.close();
console.log(JSON.stringify(result, null, 2));
