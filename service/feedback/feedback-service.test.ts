import type { ChildProcess } from 'node:child_process';
import { MeterProvider, MetricReader } from '@opentelemetry/sdk-metrics';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { feedback as feedbackTable, predictions } from '../../db/schema.js';
import { SEGMENT_NAMES } from '../domain/segments.js';
import { FEATURE_NAMES } from '../features/booking-features.js';
import type { Database } from '../storage/database.js';
import type { PredictionRow } from '../storage/prediction-log.js';
import { createServiceMetrics, initializeCounters } from '../telemetry/service-metrics.js';
import { freshPglite, freshPostgres, postgresAvailable } from '../test-support/databases.js';
import { eventually, flagsFile, silentLogger, tempDir, testMetrics } from '../test-support/harness.js';
import { monitoringBinaries, promQuery, startPrometheus } from '../test-support/monitoring.js';
import { startService, waitForReady } from '../test-support/process.js';
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
    variant: 'gbt-v2',
    modelVersion: 'gbt-v2',
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

describe('a shadow challenger', () => {
  it('pairs its answer with the rules on every booking it scored and with the serving model where one served', async () => {
    const d = await freshPglite();
    open.push(d);
    const { metrics, value } = testMetrics();
    initializeCounters(metrics, ['gbt-v2'], 'gbt-v3');
    const shadowed = { shadowModelVersion: 'gbt-v3', shadowModelDelay: 12 };
    await d.db.insert(predictions).values([
      // ML served 10, rules 6, challenger 12; actual 13: |12-13| = 1 against rules 7 and served 3.
      served('ml-served', shadowed),
      // The rules served 6 (no serving model to pair with); actual 9: challenger 3 against rules 3.
      served('rules-served', {
        ...shadowed,
        source: 'heuristic',
        variant: 'heuristic',
        modelVersion: null,
        delayMinutes: 6,
      }),
      // The challenger had no answer (not loaded): nothing to pair.
      served('unscored', {}),
    ]);
    const feedback = createFeedbackService({ db: d.db, metrics, logger: silentLogger });
    await feedback.submit([
      { booking_id: 'ml-served', actual_delay_minutes: 13 },
      { booking_id: 'rules-served', actual_delay_minutes: 9 },
      { booking_id: 'unscored', actual_delay_minutes: 9 },
    ]);

    const of = (against: string, answer?: string) => ({
      model_version: 'gbt-v3',
      against,
      ...(answer ? { answer } : {}),
    });
    expect(await value('delay.shadow.pairs', of('rules'))).toBe(2);
    expect(await value('delay.shadow.pairs', of('served_model'))).toBe(1);
    expect(await value('delay.shadow.absolute_error', of('rules', 'challenger'))).toBe(4);
    expect(await value('delay.shadow.absolute_error', of('rules', 'opponent'))).toBe(10);
    expect(await value('delay.shadow.absolute_error', of('served_model', 'challenger'))).toBe(1);
    expect(await value('delay.shadow.absolute_error', of('served_model', 'opponent'))).toBe(3);
    // (1 - 7)² + (3 - 3)²; (1 - 3)².
    expect(await value('delay.shadow.paired_difference_squared', of('rules'))).toBe(36);
    expect(await value('delay.shadow.paired_difference_squared', of('served_model'))).toBe(4);
    // The live counters of the served arms are those of any other booking.
    expect(await value('delay.feedback.scored', { arm: 'ml', model_version: 'gbt-v2' })).toBe(2);
  });
});

describe('the business counters', () => {
  // One database for both cases (their bookings differ): PGlite's migrations take seconds.
  let database: Promise<Database> | undefined;
  const shared = () => {
    database ??= freshPglite();
    return database;
  };
  afterAll(async () => (await database)?.close());

  it('count late, flagged, anticipated, false alarms and buffer minutes per arm, the rules paired on ML bookings', async () => {
    const d = await shared();
    const { metrics, value } = testMetrics();
    initializeCounters(metrics, ['gbt-v2']);
    const rules = (overrides: Partial<PredictionRow>) =>
      ({ source: 'heuristic', variant: 'heuristic', modelVersion: null, ...overrides }) as const;
    await d.db.insert(predictions).values([
      // ML 12 and the rules 6 on a trip 15 min late: ML anticipates it (3 min short), the rules miss it by 9.
      served('caught', { delayMinutes: 12, shadowHeuristicDelay: 6 }),
      // Both flag a trip 4 min late: false alarms, 7 and 6.5 minutes reserved for nothing.
      served('false-alarm', { delayMinutes: 11, shadowHeuristicDelay: 10.5 }),
      // An early trip uses none of its buffer: ML reserved nothing (-2 is 0), the rules 3, not 3 + 5.
      served('early', { delayMinutes: -2, shadowHeuristicDelay: 3 }),
      // At the threshold is late and flagged; the rules' 8 is 2 min short.
      served('at-threshold', { delayMinutes: 10, shadowHeuristicDelay: 8 }),
      // The rules served and missed by 6.
      served('rules-missed', rules({ delayMinutes: 6, shadowHeuristicDelay: 6 })),
      // Beyond the live horizon: stored, never counted.
      served('old', { predictedAt: new Date(Date.now() - 3 * 86_400_000), delayMinutes: 20 }),
    ]);
    const feedback = createFeedbackService({
      db: d.db,
      metrics,
      logger: silentLogger,
      business: { lateThresholdMinutes: 10, costPerDelayMinute: 0.5 },
    });
    await feedback.submit([
      { booking_id: 'caught', actual_delay_minutes: 15 },
      { booking_id: 'false-alarm', actual_delay_minutes: 4 },
      { booking_id: 'early', actual_delay_minutes: -5 },
      { booking_id: 'at-threshold', actual_delay_minutes: 10 },
      { booking_id: 'rules-missed', actual_delay_minutes: 12 },
      { booking_id: 'old', actual_delay_minutes: 30 },
    ]);
    // A repeat and a correction change no counter: each booking weighs once.
    await feedback.submit([
      { booking_id: 'caught', actual_delay_minutes: 15 },
      { booking_id: 'false-alarm', actual_delay_minutes: 40 },
    ]);

    const figures = async (arm: string, model_version: string) => {
      const of = (name: string) => value(`delay.business.${name}`, { arm, model_version });
      return {
        late: await of('late'),
        flagged: await of('flagged'),
        anticipated: await of('anticipated'),
        false_alarms: await of('false_alarms'),
        unused: await of('buffer_unused'),
        shortfall: await of('buffer_shortfall'),
      };
    };
    expect(await figures('ml', 'gbt-v2')).toEqual({
      late: 2,
      flagged: 3,
      anticipated: 2,
      false_alarms: 1,
      unused: 7,
      shortfall: 3,
    });
    expect(await figures('heuristic_shadow', 'gbt-v2')).toEqual({
      late: 2,
      flagged: 1,
      anticipated: 0,
      false_alarms: 1,
      unused: 9.5,
      shortfall: 11,
    });
    expect(await figures('heuristic', 'none')).toEqual({
      late: 1,
      flagged: 0,
      anticipated: 0,
      false_alarms: 0,
      unused: 0,
      shortfall: 6,
    });
    expect(await value('delay.business.cost_per_delay_minute')).toBe(0.5);
  });

  it('moves with LATE_THRESHOLD_MINUTES, and exports no cost without COST_PER_DELAY_MINUTE', async () => {
    const d = await shared();
    const reader = new CollectingReader();
    const metrics = createServiceMetrics(new MeterProvider({ readers: [reader] }).getMeter('test'));
    initializeCounters(metrics, ['gbt-v2']);
    await d.db
      .insert(predictions)
      .values([served('late-a', { delayMinutes: 12 }), served('late-b', { delayMinutes: 16 })]);
    const feedback = createFeedbackService({
      db: d.db,
      metrics,
      logger: silentLogger,
      business: { lateThresholdMinutes: 15, costPerDelayMinute: undefined },
    });
    await feedback.submit([
      { booking_id: 'late-a', actual_delay_minutes: 14 },
      { booking_id: 'late-b', actual_delay_minutes: 15 },
    ]);
    const { resourceMetrics } = await reader.collect();
    const exported = resourceMetrics.scopeMetrics.flatMap((s) => s.metrics);
    const points = (name: string) =>
      (exported.find((m) => m.descriptor.name === name)?.dataPoints ?? [])
        .filter((p) => p.attributes.arm === 'ml')
        .map((p) => p.value);
    // Late from 15 min: b alone, flagged and anticipated; a's 12 against 14 is neither.
    expect(points('delay.business.late')).toEqual([1]);
    expect(points('delay.business.anticipated')).toEqual([1]);
    expect(points('delay.business.false_alarms')).toEqual([0]);
    const cost = exported.filter((m) => m.descriptor.name === 'delay.business.cost_per_delay_minute');
    expect(cost.some((m) => m.dataPoints.length > 0)).toBe(false);
  });
});

describe('feedback by segment', () => {
  it('counts each scored booking into its segments: scored, over and under prediction, below and above the interval', async () => {
    const d = await freshPglite();
    open.push(d);
    const { metrics, value } = testMetrics();
    initializeCounters(metrics, ['gbt-v2']);
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

    const ml = (segment: string) => ({ arm: 'ml', model_version: 'gbt-v2', segment });
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
    const shadow = { arm: 'heuristic_shadow', model_version: 'gbt-v2', segment: 'long_delay' };
    expect(await value('delay.feedback.segment.scored', shadow)).toBe(1);
    expect(await value('delay.feedback.segment.under_prediction', shadow)).toBe(8);
    expect(await value('delay.feedback.segment.below_interval', shadow)).toBe(0);

    // A vector of an older schema has no segments; it is scored overall only.
    expect(await value('delay.feedback.scored', { arm: 'ml', model_version: 'gbt-v2' })).toBe(3);
  }, 120_000);

  it('starts every segment series at 0, one per segment, arm and model version', async () => {
    const reader = new CollectingReader();
    const metrics = createServiceMetrics(new MeterProvider({ readers: [reader] }).getMeter('test'));
    initializeCounters(metrics, ['gbt-v2']);
    const { resourceMetrics } = await reader.collect();
    const scored = resourceMetrics.scopeMetrics
      .flatMap((s) => s.metrics)
      .find((m) => m.descriptor.name === 'delay.feedback.segment.scored');
    const series = (scored?.dataPoints ?? []).map(
      (p) => `${p.attributes.arm} ${p.attributes.model_version} ${p.attributes.segment} ${p.value}`,
    );
    const expected = [
      ...SEGMENT_NAMES.map((s) => `heuristic none ${s} 0`),
      ...['ml', 'heuristic_shadow'].flatMap((arm) => SEGMENT_NAMES.map((s) => `${arm} gbt-v2 ${s} 0`)),
    ];
    expect(series.sort()).toEqual(expected.sort());
  });
});

describe('late feedback', () => {
  it('stores feedback for a prediction older than the live horizon, counts it as late, and leaves the live counters alone', async () => {
    const d = await freshPglite();
    open.push(d);
    const { metrics, value } = testMetrics();
    initializeCounters(metrics, ['gbt-v2']);
    const day = 86_400_000;
    await d.db.insert(predictions).values([
      // 20 days ago, by a version no longer served, 20 minutes off where the rules were right.
      served('retired', {
        predictedAt: new Date(Date.now() - 20 * day),
        modelVersion: 'gbt-v0',
        variant: 'gbt-v0',
      }),
      served('heuristic-old', {
        predictedAt: new Date(Date.now() - 3 * day),
        source: 'heuristic',
        variant: 'heuristic',
        modelVersion: null,
      }),
      served('fresh', { predictedAt: new Date(Date.now() - 3600_000) }),
    ]);
    const feedback = createFeedbackService({
      db: d.db,
      metrics,
      logger: silentLogger,
      liveHorizonMs: 2 * day,
    });
    const results = await feedback.submit([
      { booking_id: 'retired', actual_delay_minutes: 30 },
      { booking_id: 'heuristic-old', actual_delay_minutes: 4 },
      { booking_id: 'fresh', actual_delay_minutes: 12 },
    ]);
    expect(results.map((r) => r.outcome)).toEqual(['recorded', 'recorded', 'recorded']);
    const stored = await d.db.select({ id: feedbackTable.bookingId }).from(feedbackTable);
    expect(stored.map((r) => r.id).sort()).toEqual(['fresh', 'heuristic-old', 'retired']);

    expect(await value('delay.feedback.late', { model_version: 'gbt-v0' })).toBe(1);
    expect(await value('delay.feedback.late', { model_version: 'none' })).toBe(1);
    expect(await value('delay.feedback.late', { model_version: 'gbt-v2' })).toBe(0);
    // Only the fresh booking reaches what the rollback rules read.
    expect(await value('delay.feedback.scored')).toBe(2);
    expect(await value('delay.feedback.scored', { arm: 'ml', model_version: 'gbt-v2' })).toBe(1);
    expect(await value('delay.feedback.scored', { model_version: 'gbt-v0' })).toBe(0);
    expect(await value('delay.feedback.absolute_error', { model_version: 'gbt-v0' })).toBe(0);
    expect(await value('delay.feedback.paired_difference_squared', { model_version: 'gbt-v0' })).toBe(0);
    expect(await value('delay.feedback.segment.scored', { model_version: 'gbt-v0' })).toBe(0);
    expect(await value('delay.feedback.scored', { arm: 'heuristic' })).toBe(0);
    expect(await value('delay.feedback.events', { outcome: 'recorded' })).toBe(3);
  }, 120_000);
});

const hasPostgres = await postgresAvailable();
const hasPrometheus = monitoringBinaries('prometheus');

describe.skipIf(!hasPostgres || !hasPrometheus)('late feedback under a real Prometheus', () => {
  it('never fires a rollback alert from feedback on 20-day-old predictions; the same feedback on fresh ones does', async () => {
    const database = await freshPostgres();
    const service = await startService({
      DATABASE_URL: database.url,
      FLAGS_FILE: flagsFile({ mlWeight: 100 }, tempDir('delay-late-feedback-')),
    });
    let prometheus: ChildProcess | undefined;
    try {
      await waitForReady(service);
      const started = await startPrometheus({ metricsPorts: [service.metricsPort] });
      prometheus = started.process;
      const query = (expr: string) => promQuery(started.url, expr).catch(() => []);
      const until = async (expr: string, timeoutMs = 30_000) =>
        eventually(
          () => query(expr),
          (r) => r.length > 0,
          timeoutMs,
        );
      // Prometheus must have seen the counters at 0 before the first feedback.
      await until('delay_feedback_scored_total{arm="ml",model_version="gbt-v2"} == 0');

      // ML 20 min late on every booking where the rules were right within a few minutes: what the paired rules
      // roll back for, when it is the serving model's feedback.
      const lateByTwenty = (id: string, predictedAt: Date, i: number) =>
        served(id, { predictedAt, delayMinutes: 30, shadowHeuristicDelay: 10 + (i % 5) });
      const post = (ids: string[]) =>
        fetch(`http://127.0.0.1:${service.port}/v1/feedback/batch`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({
            feedback: ids.map((booking_id) => ({ booking_id, actual_delay_minutes: 10 })),
          }),
        }).then(async (r) => ((await r.json()) as { results: { outcome: string }[] }).results);
      const old = Array.from({ length: 60 }, (_, i) => `old-${i}`);
      await database.db
        .insert(predictions)
        .values(old.map((id, i) => lateByTwenty(id, new Date(Date.now() - 20 * 86_400_000), i)));
      expect((await post(old)).every((r) => r.outcome === 'recorded')).toBe(true);

      await until('sum(delay_feedback_events_total{outcome="recorded"}) == 60');
      // Rules evaluate every second: several rounds over the scrape that holds the late feedback.
      await new Promise((r) => setTimeout(r, 5000));
      expect(await query('ALERTS{rollback="true"}')).toEqual([]);
      expect(await query('sum(delay_feedback_scored_total) > 0')).toEqual([]);
      expect(await query('delay_feedback_late_total{model_version="gbt-v2"} == 60')).toHaveLength(1);

      const fresh = Array.from({ length: 60 }, (_, i) => `fresh-${i}`);
      await database.db.insert(predictions).values(fresh.map((id, i) => lateByTwenty(id, new Date(), i)));
      expect((await post(fresh)).every((r) => r.outcome === 'recorded')).toBe(true);
      await until(
        'ALERTS{alertname="DelayModelLosingToRulesFast",alertstate="firing",model_version="gbt-v2"}',
      );
    } finally {
      prometheus?.kill('SIGTERM');
      await service.stop('SIGTERM');
      await database.close();
    }
  }, 120_000);
});

class CollectingReader extends MetricReader {
  protected override async onShutdown() {}
  protected override async onForceFlush() {}
}
