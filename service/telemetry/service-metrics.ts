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
/** What answered a booking (a prediction's `source`). */
export const PREDICTION_SOURCES = ['ml', 'heuristic'] as const;
export type PredictionSource = (typeof PREDICTION_SOURCES)[number];
/** Which side of its moment's baseline ML - shadow heuristic sat on (delay_prediction_shadow_departure_total). */
export const SHADOW_DIRECTIONS = ['above', 'below'] as const;
export type ShadowDirection = (typeof SHADOW_DIRECTIONS)[number];
export type FeedbackArm = (typeof FEEDBACK_ARMS)[number];
/** How a shadow challenger's scoring of a booking ended: scored, or not (its answer stays empty). */
export const SHADOW_OUTCOMES = ['scored', 'unavailable', 'model_error', 'model_timeout'] as const;
export type ShadowOutcome = (typeof SHADOW_OUTCOMES)[number];
/** What a shadow challenger is paired with on the same bookings: the rules' answer, or the model that served. */
export const SHADOW_OPPONENTS = ['rules', 'served_model'] as const;
export type ShadowOpponent = (typeof SHADOW_OPPONENTS)[number];
export const SHADOW_ANSWERS = ['challenger', 'opponent'] as const;
export type ShadowAnswer = (typeof SHADOW_ANSWERS)[number];
/** The fallbacks of an ML-assigned booking (a flag error never assigned it; the rollback latch held it back). */
export const MODEL_FALLBACK_REASONS = FALLBACK_REASONS.filter(
  (r) => r !== 'flag_error' && r !== 'rollback_latch',
);
export type ModelFallbackReason = Exclude<(typeof FALLBACK_REASONS)[number], 'flag_error' | 'rollback_latch'>;
/** What failed of the rollback latch: reading it from flag_changes, or auditing a refused flag change. */
export const LATCH_ERROR_OPERATIONS = ['read', 'audit'] as const;
export type LatchErrorOperation = (typeof LATCH_ERROR_OPERATIONS)[number];
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
/** Why a model version failed to load (delay_models_load_errors_total): service/models/model-errors.ts. */
export const MODEL_LOAD_ERROR_REASONS = [
  'not_registered',
  'retired',
  'digest_mismatch',
  'card_mismatch',
  'feature_schema',
  'invalid_artifact',
  'registry_unavailable',
] as const;
/** Why a model pair in MODELS_DIR was not registered at start (delay_models_seeds_refused_total). */
export const MODEL_SEED_REFUSAL_REASONS = [
  'version_conflict',
  'retired',
  'card_mismatch',
  'feature_schema',
  'invalid_artifact',
  'registry_unavailable',
] as const;
export type ModelRefusalReason =
  | (typeof MODEL_LOAD_ERROR_REASONS)[number]
  | (typeof MODEL_SEED_REFUSAL_REASONS)[number];
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
    modelLoadErrors: meter.createCounter<{ reason: (typeof MODEL_LOAD_ERROR_REASONS)[number] } & ByModel>(
      'delay.models.load_errors',
      {
        description: `Model versions that failed to load from the registry, by model_version and reason (${MODEL_LOAD_ERROR_REASONS.join(', ')}); their bookings fall back`,
        unit: '{error}',
      },
    ),
    modelSeedsRefused: meter.createCounter<{ reason: (typeof MODEL_SEED_REFUSAL_REASONS)[number] }>(
      'delay.models.seeds_refused',
      {
        description: `Model pairs in MODELS_DIR not registered by the seeding, by reason (${MODEL_SEED_REFUSAL_REASONS.join(', ')})`,
        unit: '{model}',
      },
    ),
    modelsLoaded: meter.createObservableGauge('delay.models.loaded', {
      description:
        'Per model_version: 1 loaded on this replica, 0 named by the flag and not loaded; reported once the replica is ready',
      unit: '1',
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
    shadowPredictions: meter.createCounter<ByModel & { outcome: ShadowOutcome }>('delay.shadow.predictions', {
      description: `Bookings the shadow challenger (SHADOW_MODEL_VERSION) was asked to score, by model_version and outcome: ${SHADOW_OUTCOMES.join(', ')}`,
      unit: '{booking}',
    }),
    shadowPairs: meter.createCounter<ByModel & { against: ShadowOpponent }>('delay.shadow.pairs', {
      description:
        'Bookings with feedback the shadow challenger scored, by model_version (the challenger) and against: rules (every such booking), served_model (those a model served)',
      unit: '{booking}',
    }),
    shadowAbsError: meter.createCounter<ByModel & { against: ShadowOpponent; answer: ShadowAnswer }>(
      'delay.shadow.absolute_error',
      {
        description:
          "Sum of |predicted - actual| over the same pairs, by answer: challenger or opponent (the rules' or the served model's answer)",
        unit: 'min',
      },
    ),
    shadowPairedDifferenceSquared: meter.createCounter<ByModel & { against: ShadowOpponent }>(
      'delay.shadow.paired_difference_squared',
      {
        description:
          "Sum of (|challenger error| - |opponent error|)^2 over the same pairs: the paired difference's variance",
        unit: 'min2',
      },
    ),
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
    // The business figures (service/domain/business.ts), per arm as the error counters: late bookings are those
    // whose actual delay reaches LATE_THRESHOLD_MINUTES, flagged those whose predicted delay does.
    businessLate: meter.createCounter<{ arm: FeedbackArm } & ByModel>('delay.business.late', {
      description:
        'Scored bookings whose actual delay reached LATE_THRESHOLD_MINUTES, by arm and model_version',
      unit: '{booking}',
    }),
    businessFlagged: meter.createCounter<{ arm: FeedbackArm } & ByModel>('delay.business.flagged', {
      description:
        "Scored bookings whose predicted delay reached LATE_THRESHOLD_MINUTES (the arm's answer), by arm and model_version",
      unit: '{booking}',
    }),
    businessAnticipated: meter.createCounter<{ arm: FeedbackArm } & ByModel>('delay.business.anticipated', {
      description:
        'Scored bookings late and flagged, by arm and model_version (anticipated share = this / late)',
      unit: '{booking}',
    }),
    businessFalseAlarms: meter.createCounter<{ arm: FeedbackArm } & ByModel>('delay.business.false_alarms', {
      description:
        'Scored bookings flagged and not late, by arm and model_version (false-alarm share = this / flagged)',
      unit: '{booking}',
    }),
    businessBufferUnused: meter.createCounter<{ arm: FeedbackArm } & ByModel>(
      'delay.business.buffer_unused',
      {
        description:
          'Sum of max(max(predicted, 0) - max(actual, 0), 0): ETA buffer minutes reserved and not used, by arm and model_version',
        unit: 'min',
      },
    ),
    businessBufferShortfall: meter.createCounter<{ arm: FeedbackArm } & ByModel>(
      'delay.business.buffer_shortfall',
      {
        description:
          'Sum of max(max(actual, 0) - max(predicted, 0), 0): minutes the trip ran past its ETA buffer, by arm and model_version',
        unit: 'min',
      },
    ),
    businessReassignmentCandidates: meter.createCounter<{ source: PredictionSource }>(
      'delay.business.reassignment_candidates',
      {
        description:
          'Predictions answered with risk_level high (proactive reassignment candidates), by source',
        unit: '{prediction}',
      },
    ),
    businessCostPerDelayMinute: meter.createGauge('delay.business.cost_per_delay_minute', {
      description:
        'COST_PER_DELAY_MINUTE: what a minute of ETA buffer unused or missing costs; absent when unset',
      unit: '1',
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
    rolloutLatchHeld: meter.createObservableGauge('delay.rollout.latch_held', {
      description:
        '1 while an automatic rollback holds ML off on this instance until a person runs rollout enable, else 0',
      unit: '1',
    }),
    rolloutLatchRefusals: meter.createCounter<{ source: FlagSourceKind }>('delay.rollout.latch_refusals', {
      description:
        'Flag changes that asked for ML while the rollback latch held, routed to the heuristic instead, by flag source (file|flagd), as this instance saw them',
      unit: '{change}',
    }),
    rolloutLatchErrors: meter.createCounter<{ operation: LatchErrorOperation }>(
      'delay.rollout.latch_errors',
      {
        description:
          'Reads of the rollback latch from flag_changes (read) and audits of refused flag changes (audit) that failed; retried at the next read',
        unit: '{error}',
      },
    ),
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
export function initializeCounters(m: ServiceMetrics, modelVersions: string[], shadowVersion?: string) {
  if (shadowVersion) {
    const model_version = shadowVersion;
    for (const outcome of SHADOW_OUTCOMES) m.shadowPredictions.add(0, { model_version, outcome });
    for (const against of SHADOW_OPPONENTS) {
      m.shadowPairs.add(0, { model_version, against });
      m.shadowPairedDifferenceSquared.add(0, { model_version, against });
      for (const answer of SHADOW_ANSWERS) m.shadowAbsError.add(0, { model_version, against, answer });
    }
  }
  for (const reason of REJECTION_REASONS) m.rejectedRequests.add(0, { reason });
  const feedbackCounters = [
    m.feedbackCount,
    m.feedbackAbsError,
    m.feedbackSquaredError,
    m.feedbackActualAboveFloor,
    m.feedbackActualSquared,
    m.feedbackIntervalHits,
    m.businessLate,
    m.businessFlagged,
    m.businessAnticipated,
    m.businessFalseAlarms,
    m.businessBufferUnused,
    m.businessBufferShortfall,
  ];
  for (const source of PREDICTION_SOURCES) m.businessReassignmentCandidates.add(0, { source });
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
    for (const reason of MODEL_LOAD_ERROR_REASONS) m.modelLoadErrors.add(0, { model_version, reason });
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
  for (const reason of MODEL_SEED_REFUSAL_REASONS) m.modelSeedsRefused.add(0, { reason });
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
  for (const source of FLAG_SOURCE_KINDS) m.rolloutLatchRefusals.add(0, { source });
  for (const operation of LATCH_ERROR_OPERATIONS) m.rolloutLatchErrors.add(0, { operation });
  for (const alertname of Object.keys(ROLLBACK_SIGNALS)) m.rollbacks.add(0, { alertname });
}
