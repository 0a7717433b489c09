import { MeterProvider, MetricReader } from '@opentelemetry/sdk-metrics';
import { afterEach, describe, expect, it } from 'vitest';
import { predictions } from '../../db/schema.js';
import { SEGMENT_NAMES } from '../domain/segments.js';
import { FEATURE_NAMES } from '../features/booking-features.js';
import type { Database } from '../storage/database.js';
import type { PredictionRow } from '../storage/prediction-log.js';
import { createServiceMetrics, initializeCounters } from '../telemetry/service-metrics.js';
import { freshPglite } from '../test-support/databases.js';
import { silentLogger, testMetrics } from '../test-support/harness.js';
import { createFeedbackService } from './feedback-service.js';

const open: Database[] = [];
afterEach(async () => {
  for (const d of open.splice(0)) await d.close();
});

/** A weekday 08:30 booking in 3 mm/h rain, urgent, 12 km: rush_wet, rush_heavy_rain, priority_urgent, 8-15 km. */
const rushWetVector = FEATURE_NAMES.map(
  (name) =>
    ({ hour_local: 8.5, day_of_week: 3, precipitation_mm_h: 3, priority_code: 2, distance_km: 12 })[
      name as string
    ] ?? 0,
);

function served(bookingId: string, overrides: Partial<PredictionRow>): PredictionRow {
  return {
    bookingId,
    predictedAt: new Date(),
    endpoint: 'single',
    source: 'ml',
    variant: 'gbt-v1',
    modelVersion: 'gbt-v1',
    fallbackReason: null,
    delayMinutes: 10,
    intervalLow: 7,
    intervalHigh: 14,
    shadowHeuristicDelay: 6,
    features: rushWetVector,
    weatherSource: 'api',
    latencyMs: 1,
    traceId: null,
    ...overrides,
  };
}

describe('feedback by segment', () => {
  it('counts each scored booking into its segments: scored, over and under prediction, below and above the interval', async () => {
    const d = await freshPglite();
    open.push(d);
    const { metrics, value } = testMetrics();
    initializeCounters(metrics, ['gbt-v1']);
    await d.db.insert(predictions).values([
      served('late', {}),
      // The served delay is the reference: 18 min is a long delay.
      served('long', { delayMinutes: 18, intervalLow: 15, intervalHigh: 22 }),
      served('older-schema', { features: [1, 2, 3] }),
    ]);
    const feedback = createFeedbackService({ db: d.db, metrics, logger: silentLogger });
    await feedback.submit([
      { booking_id: 'late', actual_delay_minutes: 16 },
      { booking_id: 'long', actual_delay_minutes: 14 },
      { booking_id: 'older-schema', actual_delay_minutes: 5 },
    ]);

    const ml = (segment: string) => ({ arm: 'ml', model_version: 'gbt-v1', segment });
    expect(await value('delay.feedback.segment.scored', ml('rush_wet'))).toBe(2);
    expect(await value('delay.feedback.segment.scored', ml('rush_heavy_rain'))).toBe(2);
    expect(await value('delay.feedback.segment.scored', ml('long_delay'))).toBe(1);
    expect(await value('delay.feedback.segment.scored', ml('rush_dry'))).toBe(0);
    // late: 10 against 16, 6 min under and above [7, 14]; long: 18 against 14, 4 min over and below [15, 22].
    expect(await value('delay.feedback.segment.under_prediction', ml('rush_wet'))).toBe(6);
    expect(await value('delay.feedback.segment.over_prediction', ml('rush_wet'))).toBe(4);
    expect(await value('delay.feedback.segment.above_interval', ml('rush_wet'))).toBe(1);
    expect(await value('delay.feedback.segment.below_interval', ml('rush_wet'))).toBe(1);
    expect(await value('delay.feedback.segment.over_prediction', ml('long_delay'))).toBe(4);
    expect(await value('delay.feedback.segment.under_prediction', ml('long_delay'))).toBe(0);

    // The shadow is scored on the same bookings (the served delay's segments), without an interval.
    const shadow = { arm: 'heuristic_shadow', model_version: 'gbt-v1', segment: 'long_delay' };
    expect(await value('delay.feedback.segment.scored', shadow)).toBe(1);
    expect(await value('delay.feedback.segment.under_prediction', shadow)).toBe(8);
    expect(await value('delay.feedback.segment.below_interval', shadow)).toBe(0);

    // A vector of an older schema has no segments; it is scored overall only.
    expect(await value('delay.feedback.scored', { arm: 'ml', model_version: 'gbt-v1' })).toBe(3);
  }, 120_000);

  it('starts every segment series at 0, one per segment, arm and model version', async () => {
    const reader = new CollectingReader();
    const metrics = createServiceMetrics(new MeterProvider({ readers: [reader] }).getMeter('test'));
    initializeCounters(metrics, ['gbt-v1']);
    const { resourceMetrics } = await reader.collect();
    const scored = resourceMetrics.scopeMetrics
      .flatMap((s) => s.metrics)
      .find((m) => m.descriptor.name === 'delay.feedback.segment.scored');
    const series = (scored?.dataPoints ?? []).map(
      (p) => `${p.attributes.arm} ${p.attributes.model_version} ${p.attributes.segment} ${p.value}`,
    );
    const expected = [
      ...SEGMENT_NAMES.map((s) => `heuristic none ${s} 0`),
      ...['ml', 'heuristic_shadow'].flatMap((arm) => SEGMENT_NAMES.map((s) => `${arm} gbt-v1 ${s} 0`)),
    ];
    expect(series.sort()).toEqual(expected.sort());
  });
});

class CollectingReader extends MetricReader {
  protected override async onShutdown() {}
  protected override async onForceFlush() {}
}
