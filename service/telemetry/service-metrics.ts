import type { Meter } from '@opentelemetry/api';
import { FALLBACK_REASONS } from '../domain/estimate.js';
import { FLAG_KEYS } from '../domain/flags.js';
import { ROLLBACK_SIGNALS } from '../domain/rollback-policy.js';
import { SEGMENT_NAMES, type SegmentName } from '../domain/segments.js';

/*
 * The label values of every bounded label: the code that counts types its values against these lists, and
 * initializeCounters starts every series at 0 from them, so a new value is added in one place.
 */

/** Why a served prediction was never stored: the log's full queue, a shutdown's deadline, a row the database refused. */
export const PREDICTION_DROP_REASONS = ['queue_full', 'shutdown', 'refused'] as const;
export type PredictionDropReason = (typeof PREDICTION_DROP_REASONS)[number];
/** The `reason` of each problem document the API answers (docs/api.md). */
export const REJECTION_REASONS = [
  'validation',
  'malformed_json',
  'not_found',
  'method_not_allowed',
  'body_too_large',
  'unsupported_media_type',
  'internal',
  'not_ready',
  'overloaded',
  'ml_unavailable',
  'unknown_booking',
  'unauthorized',
  'rollback_not_written',
] as const;
export type RejectionReason = (typeof REJECTION_REASONS)[number];
export const WEBHOOK_OUTCOMES = [
  'rolled_back',
  'already_rolled_back',
  'rolled_back_here_only',
  'failed',
  'not_served',
  'ignored',
] as const;
export type WebhookOutcome = (typeof WEBHOOK_OUTCOMES)[number];
/** What became of a rollout change's audit row: stored before the answer, answered before it, never stored. */
export const AUDIT_WRITE_OUTCOMES = ['written', 'late', 'failed'] as const;
export type AuditWriteOutcome = (typeof AUDIT_WRITE_OUTCOMES)[number];
/** What one automatic promotion check decided; voided: a change since its judgement (a rollback) stopped it. */
export const PROMOTION_OUTCOMES = ['promoted', 'held', 'voided', 'failed'] as const;
export type PromotionOutcome = (typeof PROMOTION_OUTCOMES)[number];
export const FEEDBACK_OUTCOMES = ['recorded', 'unchanged', 'corrected'] as const;
export type FeedbackOutcome = (typeof FEEDBACK_OUTCOMES)[number];
/** Where feedback scores a booking: the arm that served it, and the heuristic's shadow answer on ML bookings. */
export const FEEDBACK_ARMS = ['ml', 'heuristic', 'heuristic_shadow'] as const;
/** Which side of its moment's baseline ML - shadow heuristic sat on (delay_prediction_shadow_departure_total). */
export const SHADOW_DIRECTIONS = ['above', 'below'] as const;
export type ShadowDirection = (typeof SHADOW_DIRECTIONS)[number];
export type FeedbackArm = (typeof FEEDBACK_ARMS)[number];
/** The fallbacks of an ML-assigned booking (a flag error never assigned it). */
export const MODEL_FALLBACK_REASONS = FALLBACK_REASONS.filter((r) => r !== 'flag_error');
export type ModelFallbackReason = Exclude<(typeof FALLBACK_REASONS)[number], 'flag_error'>;
export const WEATHER_LOOKUP_OUTCOMES = ['l1_hit', 'l2_hit', 'miss', 'stale', 'default'] as const;
export type WeatherLookupOutcome = (typeof WEATHER_LOOKUP_OUTCOMES)[number];
export const WEATHER_REFUSAL_REASONS = [
  'budget',
  'auth',
  'rate_limited',
  'circuit_open',
  'lock_wait',
  'timeout',
] as const;
export type WeatherRefusalReason = (typeof WEATHER_REFUSAL_REASONS)[number];
export const WEATHER_CACHE_OPERATIONS = ['get', 'set', 'lock', 'budget'] as const;
export type WeatherCacheOperation = (typeof WEATHER_CACHE_OPERATIONS)[number];
export const FLAG_SOURCE_KINDS = ['file', 'flagd'] as const;
export type FlagSourceKind = (typeof FLAG_SOURCE_KINDS)[number];
export type FlagKey = (typeof FLAG_KEYS)[keyof typeof FLAG_KEYS];
type ByModel = { model_version: string };
type BySegment = { arm: FeedbackArm; segment: SegmentName } & ByModel;

/**
 * The service's own instruments. Attribute values are bounded enumerations or model versions:
 * never booking ids or raw URLs. Every instrument is listed in docs/metrics.md.
 */
export function createServiceMetrics(meter: Meter) {
  return {
    predictions: meter.createCounter('delay.predictions', {
      description: 'Predictions answered, by source (ml|heuristic), variant and endpoint (single|batch)',
      unit: '{prediction}',
    }),
    fallbacks: meter.createCounter<{ reason: ModelFallbackReason } & ByModel>('delay.prediction.fallbacks', {
      description: 'ML-assigned bookings answered by the heuristic, by reason',
      unit: '{prediction}',
    }),
    predictionDuration: meter.createHistogram('delay.prediction.duration', {
      description:
        'Time to answer a prediction request, by endpoint (single|batch) and assignment (ml|heuristic|mixed|failed: where the flag sent its bookings)',
      unit: 's',
      advice: {
        explicitBucketBoundaries: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.25, 0.5, 1],
      },
    }),
    shadowGap: meter.createCounter('delay.prediction.shadow_gap', {
      description:
        "Sum of |ML answer - the heuristic's shadow answer| on ML-served bookings, by model_version: the label-free signal",
      unit: 'min',
    }),
    shadowCompared: meter.createCounter('delay.prediction.shadow_compared', {
      description: 'ML-served bookings compared with their shadow heuristic answer, by model_version',
      unit: '{prediction}',
    }),
    shadowDeparture: meter.createCounter<ByModel & { direction: ShadowDirection }>(
      'delay.prediction.shadow_departure',
      {
        description:
          "Sum of how far ML - shadow heuristic sat above (direction=above) or below (below) what the model card's holdout shows for the same moment, by model_version: the label-free rollback signal",
        unit: 'min',
      },
    ),
    shadowDepartureCompared: meter.createCounter('delay.prediction.shadow_departure_compared', {
      description:
        "ML-served bookings whose gap to the shadow heuristic was judged against the card's baseline, by model_version",
      unit: '{prediction}',
    }),
    rejectedRequests: meter.createCounter<{ reason: RejectionReason }>('delay.http.rejected_requests', {
      description: 'Requests answered with a problem document, by reason',
      unit: '{request}',
    }),
    flagConfigErrors: meter.createCounter<{ source: FlagSourceKind }>('delay.flags.config_errors', {
      description: 'Flag configurations refused (invalid file or sync payload); the last good one stays',
      unit: '{error}',
    }),
    modelLoadErrors: meter.createCounter('delay.models.load_errors', {
      description: 'Model versions that failed to load, by model_version; their bookings fall back',
      unit: '{error}',
    }),
    inferenceRows: meter.createHistogram('delay.models.inference_rows', {
      description: 'Rows scored per ONNX Runtime call, by model_version: concurrent predictions share a call',
      unit: '{row}',
      advice: { explicitBucketBoundaries: [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1000] },
    }),
    weatherLookups: meter.createCounter<{ outcome: WeatherLookupOutcome }>('delay.weather.lookups', {
      description: `Weather lookups by outcome (miss: fetched): ${WEATHER_LOOKUP_OUTCOMES.join(', ')}`,
      unit: '{lookup}',
    }),
    weatherApiCalls: meter.createCounter('delay.weather.api_calls', {
      description: 'OpenWeatherMap calls by endpoint (current|forecast) and HTTP status (or timeout|network)',
      unit: '{call}',
    }),
    weatherApiDuration: meter.createHistogram('delay.weather.api_duration', {
      description: 'OpenWeatherMap call duration, by endpoint',
      unit: 's',
      advice: { explicitBucketBoundaries: [0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 1, 2, 5] },
    }),
    weatherCallsRefused: meter.createCounter<{ reason: WeatherRefusalReason }>(
      'delay.weather.calls_refused',
      {
        description: `Lookups that did not reach the API or gave up on it, by reason: ${WEATHER_REFUSAL_REASONS.join(', ')}`,
        unit: '{lookup}',
      },
    ),
    weatherCacheErrors: meter.createCounter<{ operation: WeatherCacheOperation }>(
      'delay.weather.cache_errors',
      {
        description:
          'Redis operations of the weather cache that failed, by operation; the lookup goes on without them',
        unit: '{error}',
      },
    ),
    weatherBudgetRemaining: meter.createObservableGauge('delay.weather.budget_remaining', {
      description: "Calls left in today's (UTC) weather API budget, as this instance last saw it",
      unit: '{call}',
    }),
    predictionLogDepth: meter.createObservableGauge('delay.prediction_log.queue_depth', {
      description: 'Predictions waiting to be written to the database',
      unit: '{prediction}',
    }),
    predictionLogWritten: meter.createCounter('delay.prediction_log.written', {
      description: 'Predictions written to the database',
      unit: '{prediction}',
    }),
    predictionLogWriteErrors: meter.createCounter('delay.prediction_log.write_errors', {
      description: 'Failed batch writes (the batch is retried)',
      unit: '{error}',
    }),
    predictionLogDropped: meter.createCounter<{ reason: PredictionDropReason }>(
      'delay.prediction_log.dropped',
      {
        description: `Predictions never written, by reason: ${PREDICTION_DROP_REASONS.join(', ')}`,
        unit: '{prediction}',
      },
    ),
    feedbackEvents: meter.createCounter<{ outcome: FeedbackOutcome }>('delay.feedback.events', {
      description: `Feedback received, by outcome: ${FEEDBACK_OUTCOMES.join(', ')}`,
      unit: '{feedback}',
    }),
    feedbackLate: meter.createCounter<ByModel>('delay.feedback.late', {
      description:
        'First feedback values whose prediction was served longer ago than FEEDBACK_LIVE_HORIZON_HOURS, by model_version: stored and reported, kept out of the live error counters',
      unit: '{booking}',
    }),
    feedbackCount: meter.createCounter<{ arm: FeedbackArm } & ByModel>('delay.feedback.scored', {
      description:
        'Bookings scored against their actual delay, by arm (ml, heuristic, heuristic_shadow) and model_version',
      unit: '{booking}',
    }),
    feedbackAbsError: meter.createCounter<{ arm: FeedbackArm } & ByModel>('delay.feedback.absolute_error', {
      description: 'Sum of |predicted - actual| delay, by arm and model_version (MAE = this / scored)',
      unit: 'min',
    }),
    feedbackSquaredError: meter.createCounter<{ arm: FeedbackArm } & ByModel>(
      'delay.feedback.squared_error',
      {
        description:
          'Sum of (predicted - actual)^2, by arm and model_version (RMSE, and R^2 with the two below)',
        unit: 'min2',
      },
    ),
    feedbackPairedDifferenceSquared: meter.createCounter('delay.feedback.paired_difference_squared', {
      description:
        "Sum of (|ML error| - |shadow heuristic error|)^2 over ML-served bookings, by model_version: the paired difference's variance",
      unit: 'min2',
    }),
    feedbackActualAboveFloor: meter.createCounter<{ arm: FeedbackArm } & ByModel>(
      'delay.feedback.actual_above_floor',
      {
        description:
          'Sum of (actual delay + 60): actual delays may be negative down to -60 min, and a counter only grows. Sum of actuals = this - 60 x scored',
        unit: 'min',
      },
    ),
    feedbackActualSquared: meter.createCounter<{ arm: FeedbackArm } & ByModel>(
      'delay.feedback.actual_squared',
      {
        description: 'Sum of squared actual delays, by arm and model_version',
        unit: 'min2',
      },
    ),
    // Observed at collection: the monitor keeps plain counters, as a synchronous counter would cost one
    // attribute lookup per feature per booking.
    featureObservations: meter.createObservableCounter('delay.features.observations', {
      description:
        "Served feature values counted into the baseline model's training bins, by feature and bin",
      unit: '{booking}',
    }),
    featureExpected: meter.createObservableCounter('delay.features.expected', {
      description:
        "Served feature values as the baseline model's training data spreads them over its bins for the same moment (hour of the week; month for weather), by feature and bin: the drift rules' reference",
      unit: '{booking}',
    }),
    featureBaselineRatio: meter.createObservableGauge('delay.features.baseline_ratio', {
      description: "Share of the baseline model's training rows in each bin, by feature and bin",
      unit: '1',
    }),
    rolloutMlPercentage: meter.createObservableGauge('delay.rollout.ml_percentage', {
      description:
        'Share of bookings the delay-model flag sends to ML, as this instance reads its flags (0..100)',
      unit: '%',
    }),
    feedbackIntervalHits: meter.createCounter<{ arm: FeedbackArm } & ByModel>(
      'delay.feedback.interval_hits',
      {
        description:
          'Scored bookings whose actual delay fell inside the predicted interval, by arm and model_version',
        unit: '{booking}',
      },
    ),
    // Per segment (domain/segments.ts): coverage = 1 - (below + above) / scored; bias = (over - under) / scored;
    // MAE = (over + under) / scored. Bias needs two counters because a counter only grows.
    feedbackSegmentScored: meter.createCounter<BySegment>('delay.feedback.segment.scored', {
      description: `Scored bookings by segment (${SEGMENT_NAMES.join(', ')}), arm and model_version; a booking counts in each of its segments`,
      unit: '{booking}',
    }),
    feedbackSegmentOverPrediction: meter.createCounter<BySegment>('delay.feedback.segment.over_prediction', {
      description: 'Sum of max(predicted - actual, 0) by segment, arm and model_version',
      unit: 'min',
    }),
    feedbackSegmentUnderPrediction: meter.createCounter<BySegment>(
      'delay.feedback.segment.under_prediction',
      {
        description: 'Sum of max(actual - predicted, 0) by segment, arm and model_version',
        unit: 'min',
      },
    ),
    feedbackSegmentBelowInterval: meter.createCounter<BySegment>('delay.feedback.segment.below_interval', {
      description:
        'Scored bookings whose actual delay fell below the predicted interval, by segment, arm and model_version',
      unit: '{booking}',
    }),
    feedbackSegmentAboveInterval: meter.createCounter<BySegment>('delay.feedback.segment.above_interval', {
      description:
        'Scored bookings whose actual delay fell above the predicted interval, by segment, arm and model_version',
      unit: '{booking}',
    }),
    rollbacks: meter.createCounter('delay.rollout.rollbacks', {
      description: 'Automatic rollbacks that set ML traffic to 0%, by the alert that asked for them',
      unit: '{rollback}',
    }),
    webhookAlerts: meter.createCounter<{ outcome: WebhookOutcome }>('delay.webhook.alerts', {
      description: `Alerts received by the rollback webhook, by outcome: ${WEBHOOK_OUTCOMES.join(', ')}`,
      unit: '{alert}',
    }),
    auditWrites: meter.createCounter<{ outcome: AuditWriteOutcome }>('delay.rollout.audit_writes', {
      description: `Audit rows of rollout changes (flag_changes), by outcome: ${AUDIT_WRITE_OUTCOMES.join(', ')}`,
      unit: '{row}',
    }),
    promotionChecks: meter.createCounter<{ outcome: PromotionOutcome }>('delay.rollout.promotion_checks', {
      description: `Automatic promotion checks, by outcome: ${PROMOTION_OUTCOMES.join(', ')}`,
      unit: '{check}',
    }),
    flagEvaluationErrors: meter.createCounter<{ flag: FlagKey }>('delay.flags.evaluation_errors', {
      description: 'Flag evaluations that returned an error and used the coded default, by flag',
      unit: '{error}',
    }),
  };
}

export type ServiceMetrics = ReturnType<typeof createServiceMetrics>;

/**
 * Exports every counter with a known label set at 0 from the start, so rates and alerts see a series
 * (not "no data") before the first event, and a dashboard shows 0 rather than nothing.
 */
export function initializeCounters(m: ServiceMetrics, modelVersions: string[]) {
  for (const reason of REJECTION_REASONS) m.rejectedRequests.add(0, { reason });
  const feedbackCounters = [
    m.feedbackCount,
    m.feedbackAbsError,
    m.feedbackSquaredError,
    m.feedbackActualAboveFloor,
    m.feedbackActualSquared,
    m.feedbackIntervalHits,
  ];
  for (const counter of feedbackCounters) counter.add(0, { arm: 'heuristic', model_version: 'none' });
  const segmentCounters = [
    m.feedbackSegmentScored,
    m.feedbackSegmentOverPrediction,
    m.feedbackSegmentUnderPrediction,
    m.feedbackSegmentBelowInterval,
    m.feedbackSegmentAboveInterval,
  ];
  const initializeSegments = (arm: FeedbackArm, model_version: string) => {
    for (const segment of SEGMENT_NAMES)
      for (const counter of segmentCounters) counter.add(0, { arm, segment, model_version });
  };
  initializeSegments('heuristic', 'none');
  m.feedbackLate.add(0, { model_version: 'none' });
  for (const model_version of modelVersions) {
    m.feedbackLate.add(0, { model_version });
    for (const reason of MODEL_FALLBACK_REASONS) m.fallbacks.add(0, { reason, model_version });
    m.modelLoadErrors.add(0, { model_version });
    // A counter's first sample must be 0 for increase() to count the first feedback of a model.
    for (const arm of FEEDBACK_ARMS.filter((a) => a !== 'heuristic')) {
      for (const counter of feedbackCounters) counter.add(0, { arm, model_version });
      initializeSegments(arm, model_version);
    }
    for (const counter of [
      m.feedbackPairedDifferenceSquared,
      m.shadowGap,
      m.shadowCompared,
      m.shadowDepartureCompared,
    ])
      counter.add(0, { model_version });
    for (const direction of SHADOW_DIRECTIONS) m.shadowDeparture.add(0, { model_version, direction });
  }
  for (const source of FLAG_SOURCE_KINDS) m.flagConfigErrors.add(0, { source });
  for (const flag of Object.values(FLAG_KEYS)) m.flagEvaluationErrors.add(0, { flag });
  for (const reason of PREDICTION_DROP_REASONS) m.predictionLogDropped.add(0, { reason });
  // DelayPredictionLogStalled compares written with 0: the series must exist before the first write.
  m.predictionLogWriteErrors.add(0);
  m.predictionLogWritten.add(0);
  for (const outcome of FEEDBACK_OUTCOMES) m.feedbackEvents.add(0, { outcome });
  for (const outcome of WEATHER_LOOKUP_OUTCOMES) m.weatherLookups.add(0, { outcome });
  for (const reason of WEATHER_REFUSAL_REASONS) m.weatherCallsRefused.add(0, { reason });
  for (const operation of WEATHER_CACHE_OPERATIONS) m.weatherCacheErrors.add(0, { operation });
  for (const outcome of WEBHOOK_OUTCOMES) m.webhookAlerts.add(0, { outcome });
  for (const outcome of AUDIT_WRITE_OUTCOMES) m.auditWrites.add(0, { outcome });
  for (const outcome of PROMOTION_OUTCOMES) m.promotionChecks.add(0, { outcome });
  for (const alertname of Object.keys(ROLLBACK_SIGNALS)) m.rollbacks.add(0, { alertname });
}
