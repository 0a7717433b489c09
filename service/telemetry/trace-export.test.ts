import { randomBytes } from 'node:crypto';
import { describe, expect, it, onTestFinished } from 'vitest';
import { booking, flagsFile } from '../test-support/harness.js';
import { startOtlpSink } from '../test-support/otlp-sink.js';
import { startService, waitForReady } from '../test-support/process.js';

/** The real process exporting to a local OTLP sink, ML for every booking; spans are read after SIGTERM flushed them. */
async function serviceTracingTo(traceSampleRatio?: string) {
  const sink = await startOtlpSink({ keepSpans: true });
  const service = await startService({
    FLAGS_FILE: flagsFile({ mlWeight: 100 }),
    OTEL_EXPORTER_OTLP_ENDPOINT: sink.url,
    ...(traceSampleRatio === undefined ? {} : { TRACE_SAMPLE_RATIO: traceSampleRatio }),
  });
  onTestFinished(() => sink.close());
  onTestFinished(async () => {
    await service.stop('SIGKILL');
  });
  await waitForReady(service);
  const predict = (id: string, headers: Record<string, string> = {}) =>
    fetch(`http://127.0.0.1:${service.port}/v1/predictions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...headers },
      body: JSON.stringify(booking({ booking_id: id })),
    }).then((res) => res.status);
  const spansAfterStop = async () => {
    expect(await service.stop('SIGTERM')).toBe(0);
    return sink.spans();
  };
  return { predict, spansAfterStop };
}

const traceparent = (traceId: string, sampled: boolean) =>
  `00-${traceId}-${randomBytes(8).toString('hex')}-${sampled ? '01' : '00'}`;

describe('trace export', () => {
  it('at the default ratio (1), exports every prediction trace with its spans', async () => {
    const { predict, spansAfterStop } = await serviceTracingTo();
    for (let i = 0; i < 5; i++) expect(await predict(`t-${i}`)).toBe(200);

    const spans = await spansAfterStop();
    const inference = spans.filter((s) => s.name === 'model.inference');
    expect(inference).toHaveLength(5);
    expect(new Set(inference.map((s) => s.traceId)).size).toBe(5);
    for (const { traceId } of inference) {
      const names = spans.filter((s) => s.traceId === traceId).map((s) => s.name);
      // The server span is named by the route Hono matched (semantic conventions), not the method alone.
      expect(names).toEqual(
        expect.arrayContaining(['POST /v1/predictions', 'feature_flag.evaluation delay-model']),
      );
    }
  });

  it('at ratio 0, exports only the traces a caller marked sampled', async () => {
    const { predict, spansAfterStop } = await serviceTracingTo('0');
    const followed = randomBytes(16).toString('hex');
    const declined = randomBytes(16).toString('hex');
    for (let i = 0; i < 5; i++) expect(await predict(`u-${i}`)).toBe(200);
    expect(await predict('sampled-by-caller', { traceparent: traceparent(followed, true) })).toBe(200);
    expect(await predict('declined-by-caller', { traceparent: traceparent(declined, false) })).toBe(200);

    const spans = await spansAfterStop();
    expect(spans.length).toBeGreaterThan(0);
    expect(spans.every((s) => s.traceId === followed)).toBe(true);
    expect(spans.map((s) => s.name)).toEqual(
      expect.arrayContaining(['POST /v1/predictions', 'model.inference']),
    );
  });
});
