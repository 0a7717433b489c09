import { z } from '@hono/zod-openapi';
import { WEATHER_SOURCES } from '../domain/weather.js';
import { PredictionSchema } from '../predictions/schemas.js';
import { BOOTSTRAP_MAX_PAIRS, BOOTSTRAP_RESAMPLES } from './paired-comparison.js';

/*
 * What the report and monitoring endpoints answer: the types the reports are written against and the
 * schemas of the OpenAPI document, one definition (service/http/openapi.test.ts checks real answers).
 */

const minutes = (description: string) => z.number().openapi({ description: `${description}, minutes` });
const count = (description: string) => z.number().int().min(0).openapi({ description });
const timestamp = z.iso
  .datetime()
  .openapi({ description: 'UTC, milliseconds', example: '2026-11-25T07:15:00.123Z' });

export const ArmMetricsSchema = z
  .object({
    n: count('Scored predictions (those with feedback)'),
    mae: minutes('Mean absolute error').nullable(),
    rmse: minutes('Root mean squared error').nullable(),
    r2: z
      .number()
      .nullable()
      .openapi({ description: 'Coefficient of determination; null when every actual is the same' }),
  })
  .openapi('ArmMetrics', { description: 'Accuracy of one arm; the errors are null when n is 0' });

export const ArmsSchema = z
  .object({
    ml: ArmMetricsSchema,
    heuristic: ArmMetricsSchema,
    heuristic_shadow_on_ml: ArmMetricsSchema.openapi({
      description: "The heuristic's shadow answer on the bookings ML served",
    }),
  })
  .openapi('Arms');

export const PairedComparisonSchema = z
  .object({
    n: count('Pairs: ML-served bookings with feedback'),
    mean_difference: minutes(
      'Mean of |ML error| - |heuristic error| on the same bookings; negative: ML better',
    ).nullable(),
    ci95: z
      .tuple([z.number(), z.number()])
      .nullable()
      .openapi({
        description: `95% interval of mean_difference: percentile bootstrap (${BOOTSTRAP_RESAMPLES.toLocaleString('en')} resamples) up to ${BOOTSTRAP_MAX_PAIRS.toLocaleString('en')} pairs, the normal interval of the mean (1.96 sd / √n) above`,
      }),
    verdict: z.enum(['ml_better', 'ml_worse', 'not_yet_known']),
    pairs_needed: z.number().int().min(0).nullable().openapi({
      description: 'When not yet known: pairs needed for the interval to exclude 0 if the difference holds',
    }),
  })
  .openapi('PairedComparison');

const share = (description: string) =>
  z
    .number()
    .min(0)
    .max(1)
    .nullable()
    .openapi({ description: `${description}; null when there is none to share` });
const perBooking = (description: string) =>
  z
    .number()
    .min(0)
    .nullable()
    .openapi({ description: `${description}, minutes per scored booking; null when n is 0` });

export const BusinessFiguresSchema = z
  .object({
    n: count('Scored bookings'),
    late: count('Bookings whose actual delay reached the lateness threshold'),
    flagged: count("Bookings whose predicted delay (the arm's point answer) reached the lateness threshold"),
    anticipated: count('Bookings late and flagged'),
    false_alarms: count('Bookings flagged and not late'),
    buffer_unused_minutes: z.number().min(0).openapi({
      description:
        'If dispatch reserves the predicted delay (at least 0) as the ETA buffer: the minutes reserved and not used, summed',
    }),
    buffer_shortfall_minutes: z
      .number()
      .min(0)
      .openapi({ description: 'The minutes the trips ran past that buffer, summed' }),
    anticipated_ratio: share('Share of the late bookings that were flagged (the plan: 75% or more)'),
    false_alarm_ratio: share('Share of the flagged bookings that were not late'),
    buffer_unused_minutes_mean: perBooking('Buffer reserved and not used'),
    buffer_shortfall_minutes_mean: perBooking('Minutes past the buffer'),
    cost: z.number().min(0).nullable().openapi({
      description:
        '(buffer_unused_minutes + buffer_shortfall_minutes) x COST_PER_DELAY_MINUTE; null when that is unset',
    }),
  })
  .openapi('BusinessFigures', { description: "What one arm's answers meant for dispatch" });

const change = (description: string) =>
  z
    .number()
    .nullable()
    .openapi({
      description: `${description}, ML against the rules on the same bookings: ML / rules - 1 (-0.15: 15% less); null when the rules' is 0`,
    });

export const BusinessOutcomeSchema = z
  .object({
    late_threshold_minutes: z
      .number()
      .openapi({ description: 'LATE_THRESHOLD_MINUTES: late and flagged mean at or above it' }),
    cost_per_delay_minute: z
      .number()
      .nullable()
      .openapi({ description: "COST_PER_DELAY_MINUTE, in the operator's currency; null when unset" }),
    ml: BusinessFiguresSchema,
    heuristic: BusinessFiguresSchema,
    heuristic_shadow_on_ml: BusinessFiguresSchema.openapi({
      description: "The heuristic's shadow answer on the bookings ML served",
    }),
    ml_against_rules: z.object({
      buffer_unused_change: change('Buffer minutes reserved and not used (the plan: -15%)'),
      buffer_shortfall_change: change('Minutes past the buffer'),
      buffer_minutes_change: change(
        'Buffer minutes unused and missing, what the cost is at any price (the plan: -10%)',
      ),
    }),
  })
  .openapi('BusinessOutcome', {
    description:
      'The business figures of the window per arm, and ML against the rules on the same ML-served bookings',
  });

export const AbReportSchema = z
  .object({
    window_days: z.number().int().min(1).openapi({
      description:
        'The window: bookings whose first prediction is in the last window_days x 24 hours, all of them',
    }),
    arms: ArmsSchema,
    ml_by_model_version: z.record(z.string(), ArmMetricsSchema),
    paired: PairedComparisonSchema,
    business: BusinessOutcomeSchema,
  })
  .openapi('AbReport');

export const SummaryTotalsSchema = z.object({
  predictions: count('Predictions served'),
  ml: count('Served by a model'),
  fallbacks: count('Fell back to the heuristic (fallback_reason set)'),
  weather_default: count('Made with the neutral default weather'),
  mean_latency_ms: z.number().nullable().openapi({ description: 'Null without predictions' }),
});

export const MonitoringSummarySchema = z
  .object({ window: z.literal('24h'), ...SummaryTotalsSchema.shape, accuracy: ArmsSchema })
  .openapi('MonitoringSummary');

export const DailyRowSchema = z
  .object({
    day: z.iso.date().openapi({ description: 'UTC day', example: '2026-11-25' }),
    predictions: count('Predictions served'),
    ml: count('Served by a model'),
    with_feedback: count('First predictions of a booking with feedback'),
    mae_ml: minutes('Mean absolute error of ML').nullable(),
    mae_heuristic: minutes('Mean absolute error of the heuristic').nullable(),
  })
  .openapi('DailyRow');

export const StoredPredictionSchema = z
  .object({
    booking_id: z.string(),
    predicted_at: timestamp,
    source: PredictionSchema.shape.source,
    variant: z.string(),
    model_version: z.string().nullable(),
    fallback_reason: PredictionSchema.shape.fallback_reason,
    delay_minutes: z.number(),
    interval_low: z.number(),
    interval_high: z.number(),
    shadow_heuristic_delay: z
      .number()
      .openapi({ description: "The heuristic's answer for the same booking, computed on every request" }),
    weather_source: z.enum(WEATHER_SOURCES),
    latency_ms: z.number(),
    actual_delay_minutes: z.number().nullable().openapi({ description: 'Null until feedback arrives' }),
  })
  .openapi('StoredPrediction');

export const AnomalySchema = z
  .object({
    booking_id: z.string(),
    predicted_at: timestamp,
    source: PredictionSchema.shape.source,
    model_version: z.string().nullable(),
    delay_minutes: z.number(),
    actual_delay_minutes: z.number(),
    absolute_error: z.number(),
  })
  .openapi('Anomaly');

export const FlagChangeSchema = z
  .object({
    at: timestamp,
    actor: z.string(),
    action: z
      .string()
      .openapi({ description: 'rollback, enable, disable, promote, set-model, canary, refused' }),
    previous_weight: z.number().nullable(),
    new_weight: z.number().nullable(),
    model_version: z.string().nullable(),
    reason: z.string().nullable(),
    alert_name: z.string().nullable().openapi({ description: 'The alert a rollback answered' }),
  })
  .openapi('FlagChange');

/** One SLO's budget over its period for one deployment (slo/*.yaml, prometheus/rules/slo.yml). */
export const SloBudgetSchema = z.object({
  slo: z.string(),
  objective: z.number().openapi({ description: 'Percent of good events the SLO promises' }),
  period: z.string(),
  deployment: z.string().nullable().openapi({ description: 'namespace/job of the series, when labelled' }),
  budget_left: z.number().nullable().openapi({
    description: 'Share of the budget not spent: 1 untouched, below 0 missed; null without traffic',
  }),
  error: z.string().optional().openapi({ description: 'Why Prometheus gave no figure' }),
});

export const DailyReportSchema = z
  .object({
    window: z.literal('24h'),
    generated_at: timestamp,
    ...SummaryTotalsSchema.shape,
    ml_share: z
      .number()
      .min(0)
      .max(1)
      .nullable()
      .openapi({ description: 'ml / predictions; null without any' }),
    accuracy: ArmsSchema,
    business: BusinessOutcomeSchema,
    reassignment_candidates: z.object({
      ml: count('Predictions ML answered with risk_level high'),
      heuristic: count('Predictions the rules answered with risk_level high'),
    }),
    anomalies: count('Scored bookings whose absolute error exceeds the manual critical MAE (5 min)'),
    rollbacks: count('Automatic rollbacks among the flag changes'),
    slo_budget: z
      .array(SloBudgetSchema)
      .nullable()
      .openapi({ description: "Each SLO's budget left, from PROMETHEUS_URL; null when it is not set" }),
    flag_changes: z
      .array(FlagChangeSchema)
      .openapi({ description: 'The audit rows of the window, oldest first' }),
  })
  .openapi('DailyReport');

export type ArmMetrics = z.infer<typeof ArmMetricsSchema>;
export type Arms = z.infer<typeof ArmsSchema>;
export type PairedComparison = z.infer<typeof PairedComparisonSchema>;
export type AbReport = z.infer<typeof AbReportSchema>;
export type BusinessOutcome = z.infer<typeof BusinessOutcomeSchema>;
export type DailyReport = z.infer<typeof DailyReportSchema>;
export type SloBudget = z.infer<typeof SloBudgetSchema>;
export type FlagChange = z.infer<typeof FlagChangeSchema>;
export type SummaryTotals = z.infer<typeof SummaryTotalsSchema>;
export type MonitoringSummary = z.infer<typeof MonitoringSummarySchema>;
export type DailyRow = z.infer<typeof DailyRowSchema>;
export type StoredPrediction = z.infer<typeof StoredPredictionSchema>;
export type Anomaly = z.infer<typeof AnomalySchema>;
