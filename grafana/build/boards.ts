import * as dashboard from '@grafana/grafana-foundation-sdk/dashboard';
import { errorRatio } from '../../prometheus/slo-generate.js';
import { SEGMENT_BAR } from '../../service/retraining/segment-figures.js';
import { type BoardKey, board, type Deployment } from './board.js';
import { alertBound, BURN_RATES, JAEGER, PLAN_TARGETS, SLO_PERIOD, SLOS, THRESHOLDS } from './definitions.js';
import {
  colouredBy,
  PROMETHEUS_REF,
  prom,
  row,
  sql,
  stat,
  steps,
  table,
  timeseries,
  variable,
} from './panels.js';

/*
 * The boards. Panel ids of the detailed boards are stable: alerts link to them (the `dashboard` annotation of every
 * rule in prometheus/rules/alerts.yml, checked by prometheus/rules.test.ts).
 */

const { maeTarget, maeCritical, fallbackRatio, latencyP95, psi, shadowDeparture } = THRESHOLDS;

const percent = (ratio: number) => `${Number((ratio * 100).toPrecision(6))}%`;
const ms = (seconds: number) => `${Math.round(seconds * 1000)} ms`;

const maeSteps = () => steps('green', [maeTarget, 'orange'], [maeCritical, 'red']);
const fallbackSteps = () => steps('green', [fallbackRatio.long, 'orange'], [fallbackRatio.short, 'red']);
const psiSteps = () => steps('green', [psi.drift, 'orange'], [psi.severe, 'red']);
const PAIRED_BOUND = alertBound(
  'DelayModelLosingToRules',
  'model_version:delay_feedback_paired_difference_minutes:mean1h',
);
const pairedSteps = () => steps('green', [PAIRED_BOUND, 'red']);
const departureSteps = () => steps('green', [shadowDeparture.minutes, 'red']);
const HTTP_5XX_BOUND = alertBound('DelayHttpServerErrors', ':delay_http_server_errors:ratio_rate5m');
const PAGE_1H = BURN_RATES.page.find((b) => b.long === '1h') as (typeof BURN_RATES.page)[number];
const SLOWEST_TICKET = Math.min(...BURN_RATES.ticket.map((b) => b.factor));
const AVAILABILITY = SLOS.find((s) => s.name === 'prediction-availability') as (typeof SLOS)[number];

/** Predictions whose error is an anomaly: the plan's threshold, the manual's critical MAE. */
const ANOMALY_MINUTES = maeCritical;

const modelVersionVariable = () =>
  new dashboard.QueryVariableBuilder('model_version')
    .label('Model version')
    .description(
      'Model versions with scored feedback (none, the heuristic-served arm, shows under All only); All also keeps versions with no feedback yet.',
    )
    .datasource(PROMETHEUS_REF)
    .query('label_values(delay_feedback_scored_total{job="$job", namespace="$namespace"}, model_version)')
    .regex('/^(?!none$).+$/')
    .current({ text: 'All', value: '$__all' })
    .multi(true)
    .includeAll(true)
    .allValue('.*')
    .refresh(dashboard.VariableRefresh.OnTimeRangeChanged)
    .sort(dashboard.VariableSort.AlphabeticalAsc);

function overview(d: Deployment) {
  const served =
    '(sum(source:delay_predictions:rate5m{source="ml"}) or vector(0)) / sum(source:delay_predictions:rate5m)';
  return board(d, 'overview', { tags: ['overview'], from: 'now-24h', postgres: true, annotated: true }, [
    row(1, 'Is ML serving, and at what share?'),
    stat({
      id: 2,
      title: 'ML share: served, and what the flag asks',
      description:
        'Is ML serving, at what share: the share of predictions ML answered over 5 min (delay_predictions_total by source), beside the delay-model flag’s ML weight as the replicas read it. Served below asked: fallbacks, or a rollback latch.',
      w: 6,
      h: 5,
      unit: 'percentunit',
      queries: [
        prom('A', served, 'served, 5 min'),
        prom('B', 'max(delay_rollout_ml_percentage) / 100', 'flag asks'),
      ],
    }),
    stat({
      id: 3,
      title: 'Served share per flag variant, 1 h',
      description:
        'Flag status per variant: each variant’s share of the predictions of the last hour, a canary’s model version by its own name beside the serving one and the heuristic.',
      w: 6,
      h: 5,
      unit: 'percentunit',
      queries: [
        prom(
          'A',
          'sum by (variant) (increase(delay_predictions_total[1h])) / ignoring (variant) group_left sum(increase(delay_predictions_total[1h]))',
          '{{variant}}',
        ),
      ],
    }),
    stat({
      id: 4,
      title: 'Rollback latch',
      description:
        'Flag status: after an automatic rollback the latch holds ML off on every replica until a person runs rollout enable (docs/adr/0014-rollback-latch.md).',
      w: 6,
      h: 5,
      queries: [prom('A', 'max(delay_rollout_latch_held)', 'latch')],
      thresholds: steps('green', [1, 'red']),
    }).mappings([
      {
        type: dashboard.MappingType.ValueToText,
        options: { '0': { text: 'open', index: 0 }, '1': { text: 'holds ML off', index: 1 } },
      },
    ]),
    stat({
      id: 5,
      title: 'Flag files refused, 1 h',
      description:
        'Flag status: flag configurations the replicas refused (delay_flags_config_errors_total by source); the last good one stays in force.',
      w: 6,
      h: 5,
      queries: [
        prom(
          'A',
          'sum by (source) (increase(delay_flags_config_errors_total[1h])) or vector(0)',
          '{{source}}',
        ),
      ],
      thresholds: steps('green', [1, 'orange']),
    }),
    row(6, 'Did it roll back?'),
    stat({
      id: 7,
      title: 'Rollbacks, 24 h',
      description:
        'Did it roll back: automatic rollbacks of the last 24 h (delay_rollout_rollbacks_total). Each is a ticket: a person decides when to re-enable.',
      w: 6,
      h: 5,
      queries: [prom('A', 'sum(increase(delay_rollout_rollbacks_total[24h]))', 'rollbacks')],
      thresholds: steps('green', [1, 'orange']),
    }),
    table({
      id: 8,
      title: 'Last rollback: signal, actor and alert',
      description:
        'Did it roll back: the last automatic rollback in the time range, from the audit table (flag_changes): the signal that fired, who wrote it and why.',
      w: 18,
      h: 5,
      queries: [
        sql(
          'A',
          `select at as time, labels->>'signal' as signal, actor, alert_name, model_version,
             previous_weight as ml_percentage_before, reason
           from flag_changes where action = 'rollback' and $__timeFilter(at) order by at desc limit 1`,
        ),
      ],
    }),
    row(9, 'Is it healthy?'),
    stat({
      id: 10,
      title: 'Instances up, of expected',
      description:
        'Is it healthy: replicas Prometheus scrapes (up), of the targets it discovered (expected); down pages after a minute (DelayServiceDown).',
      w: 4,
      h: 5,
      queries: [
        prom('A', 'sum(up)', 'up'),
        prom('B', 'count(up)', 'expected'),
        prom('C', 'count(up == 0) or vector(0)', 'down'),
      ],
    }).overrideByQuery('C', colouredBy(steps('green', [1, 'red']))),
    stat({
      id: 11,
      title: `Error budget left, ${SLO_PERIOD.replace(/(\d+)/, '$1 ')}`,
      description: `Is it healthy: the share of each SLO's ${SLO_PERIOD} error budget not yet spent (slo/*.yaml: ${SLOS.map((s) => s.description).join(' ')}). Below 0: the SLO is missed.`,
      w: 5,
      h: 5,
      unit: 'percentunit',
      queries: SLOS.map((slo, i) =>
        prom(String.fromCharCode(65 + i), `1 - (${slo.periodErrorRatio}) / ${slo.budget}`, slo.name),
      ),
      thresholds: steps('red', [0, 'green']),
    }),
    stat({
      id: 12,
      title: 'Error budget burn rate, 1 h',
      description: `Is it healthy: how many times faster than the budget allows each SLO spent it over the last hour (prometheus/rules/slo.yml). Above ${SLOWEST_TICKET}: faster than the budget lasts; ${PAGE_1H.factor} with the ${PAGE_1H.short} window pages.`,
      w: 5,
      h: 5,
      queries: SLOS.map((slo, i) =>
        prom(
          String.fromCharCode(65 + i),
          `${errorRatio(slo.name, '1h')} / ${slo.budget}`,
          `${slo.name}, 1 h`,
        ),
      ),
      thresholds: steps('green', [SLOWEST_TICKET, 'orange'], [PAGE_1H.factor, 'red']),
    }).decimals(1),
    stat({
      id: 13,
      title: 'Prediction latency, 5 min: p95 and mean',
      description: `Is it healthy, and the mean prediction time: p95 and mean time to answer per endpoint. Single predictions are coloured at ${ms(latencyP95)}, the latency SLO's bound and DelayPredictionLatencyHigh's p95; a batch answers up to 1,000 bookings.`,
      w: 5,
      h: 5,
      unit: 's',
      queries: [
        prom('A', 'endpoint:delay_prediction_duration_seconds:p95_5m', 'p95 {{endpoint}}'),
        prom(
          'B',
          'sum by (endpoint) (rate(delay_prediction_duration_sum[5m])) / sum by (endpoint) (rate(delay_prediction_duration_count[5m]))',
          'mean {{endpoint}}',
        ),
      ],
    }).overrideByRegexp('/ single$/', colouredBy(steps('green', [latencyP95, 'red']))),
    stat({
      id: 14,
      title: '5xx ratio, 5 min',
      description: `Is it healthy: server errors of the prediction endpoints (the availability SLO's errors; orange at its ${percent(AVAILABILITY.budget)} budget, red at the ${PAGE_1H.factor}x burn that pages) and of the other routes (red at ${percent(HTTP_5XX_BOUND)}, DelayHttpServerErrors).`,
      w: 5,
      h: 5,
      unit: 'percentunit',
      queries: [
        prom('A', errorRatio(AVAILABILITY.name, '5m'), 'prediction endpoints'),
        prom('B', ':delay_http_server_errors:ratio_rate5m', 'other routes'),
      ],
      thresholds: steps(
        'green',
        [AVAILABILITY.budget, 'orange'],
        [Number((PAGE_1H.factor * AVAILABILITY.budget).toPrecision(6)), 'red'],
      ),
    }).overrideByQuery('B', colouredBy(steps('green', [HTTP_5XX_BOUND, 'red']))),
    stat({
      id: 15,
      title: 'ML fallback and error ratio, 5 min',
      description: `Is it healthy, the ML error rate: ML-assigned bookings answered by the heuristic, for any reason and for model errors and timeouts alone. Above ${percent(fallbackRatio.long)} over 5 min and ${percent(fallbackRatio.short)} over 1 min rolls back (DelayMlErrorRatioHigh).`,
      w: 6,
      h: 5,
      unit: 'percentunit',
      queries: [
        prom('A', ':delay_ml_fallback:ratio_rate5m', 'fallbacks'),
        prom('B', ':delay_ml_error:ratio_rate5m', 'model errors'),
      ],
      thresholds: fallbackSteps(),
    }),
    stat({
      id: 16,
      title: 'ML departs from its usual gap to the rules, 5 min (minutes)',
      description: `Anomalies before feedback: mean |ML - rules - the card's gap for the moment| on the same bookings. Above ${shadowDeparture.minutes} rolls back (DelayModelFarFromRules).`,
      w: 6,
      h: 5,
      unit: 'm',
      queries: [
        prom('A', 'model_version:delay_prediction_shadow_departure_minutes:abs_mean5m', '{{model_version}}'),
      ],
      thresholds: departureSteps(),
    }),
    stat({
      id: 17,
      title: 'Feature drift: highest PSI, 5 min',
      description: `Anomalies in the traffic: the feature furthest from the model's training data for the same hours. Above ${psi.drift}: a ticket (DelayFeatureDrift); above ${psi.severe}: a rollback (DelayFeatureDriftSevere).`,
      w: 6,
      h: 5,
      queries: [prom('A', 'topk(1, feature:delay_feature_psi:5m)', '{{feature}}')],
      thresholds: psiSteps(),
    }).decimals(2),
    stat({
      id: 18,
      title: `Anomalies: predictions off by more than ${ANOMALY_MINUTES} minutes`,
      description: `Anomalies: predictions in the time range whose absolute error, once feedback came, is above ${ANOMALY_MINUTES} minutes (the manual's critical MAE), of those with feedback. The list: Recent predictions.`,
      w: 6,
      h: 5,
      queries: [
        sql(
          'A',
          `select count(*) filter (where abs(delay_minutes - actual_delay_minutes) > ${ANOMALY_MINUTES}) as anomalies,
             count(*) as with_feedback
           from scored_predictions where $__timeFilter(predicted_at)`,
        ),
      ],
    }),
    row(31, 'Alerts'),
    table({
      id: 32,
      title: 'Firing alerts',
      description:
        'Alerts firing now for this deployment, and DelayWatchdog, which always fires: its absence means Prometheus evaluates no rule.',
      w: 24,
      h: 7,
      queries: [
        prom('A', 'ALERTS{alertstate="firing"}', '', {
          table: true,
          alsoUnfiltered: 'ALERTS{alertname="DelayWatchdog", alertstate="firing"}',
        }),
      ],
    }).withTransformation({
      id: 'organize',
      options: { excludeByName: { Time: true, Value: true, __name__: true, alertstate: true } },
    }),
    row(19, 'Is the model accurate? (feedback)'),
    stat({
      id: 20,
      title: 'ML minus the rules on the same bookings, 1 h (minutes)',
      description: `Is it healthy against what a rollback would give: mean |ML error| - |rules' error| on the same ML-served bookings. Above ${PAIRED_BOUND} ML is less accurate than the rules; with evidence (z > ${THRESHOLDS.pairedZ}) it rolls back (DelayModelLosingToRules).`,
      w: 6,
      h: 5,
      unit: 'm',
      queries: [
        prom('A', 'model_version:delay_feedback_paired_difference_minutes:mean1h', '{{model_version}}'),
      ],
      thresholds: pairedSteps(),
    }).decimals(2),
    stat({
      id: 21,
      title: 'MAE, 24 h (minutes)',
      description: `MAE over 24 h per arm: ml, the rules serving (heuristic) and the rules' shadow answer on ML bookings. Orange above the ${maeTarget}-minute target (DelayModelMaeDegraded), red above the critical ${maeCritical}.`,
      w: 6,
      h: 5,
      unit: 'm',
      queries: [prom('A', 'arm_model_version:delay_feedback_mae_minutes:24h', '{{arm}} {{model_version}}')],
      thresholds: maeSteps(),
    }).decimals(2),
    stat({
      id: 22,
      title: 'R², 24 h',
      description: 'R² over 24 h per arm: the share of the actual delays’ variance the predictions explain.',
      w: 6,
      h: 5,
      queries: [prom('A', 'arm_model_version:delay_feedback_r2:24h', '{{arm}} {{model_version}}')],
    }).decimals(3),
    stat({
      id: 23,
      title: 'Scored bookings, 24 h',
      description: 'The evidence behind MAE and R²: bookings scored against their actual delay, per arm.',
      w: 6,
      h: 5,
      queries: [
        prom('A', 'arm_model_version:delay_feedback_scored:increase24h', '{{arm}} {{model_version}}'),
      ],
    }),
    row(24, 'Business outcome, 24 h: ML beside the rules on the same bookings'),
    ...businessStats(),
  ]);
}

/** The business figures of the feedback (service/domain/business.ts): ML against the rules' shadow answer. */
function businessStats() {
  const arms = '{arm=~"ml|heuristic_shadow"}';
  const paired = 'ML and the rules’ shadow answer on the same ML-served bookings, from feedback';
  return [
    stat({
      id: 25,
      title: 'Late bookings anticipated, 24 h',
      description: `Of the bookings that turned out late, the share the prediction flagged; ${paired}. The plan's target: ${percent(PLAN_TARGETS.anticipatedRatio)}.`,
      w: 4,
      h: 5,
      unit: 'percentunit',
      queries: [
        prom(
          'A',
          `arm_model_version:delay_business_anticipated:ratio24h${arms}`,
          '{{arm}} {{model_version}}',
        ),
      ],
      thresholds: steps('red', [PLAN_TARGETS.anticipatedRatio, 'green']),
    }),
    stat({
      id: 26,
      title: 'False alarms among flagged, 24 h',
      description: `Of the bookings flagged late, the share that was not; ${paired}. Flagging everything would anticipate every delay.`,
      w: 4,
      h: 5,
      unit: 'percentunit',
      queries: [
        prom(
          'A',
          `arm_model_version:delay_business_false_alarms:ratio24h${arms}`,
          '{{arm}} {{model_version}}',
        ),
      ],
    }),
    stat({
      id: 27,
      title: 'Buffer unused per booking, 24 h (minutes)',
      description: `Minutes of the ETA buffer (the predicted delay) reserved and not used, per booking; ${paired}. The plan: ${percent(PLAN_TARGETS.bufferUnusedChange)} against the rules.`,
      w: 4,
      h: 5,
      unit: 'm',
      queries: [
        prom(
          'A',
          `arm_model_version:delay_business_buffer_unused_minutes:mean24h${arms}`,
          '{{arm}} {{model_version}}',
        ),
      ],
    }).decimals(2),
    stat({
      id: 28,
      title: 'Buffer shortfall per booking, 24 h (minutes)',
      description: `Minutes trips ran past their buffer, per booking; ${paired}.`,
      w: 4,
      h: 5,
      unit: 'm',
      queries: [
        prom(
          'A',
          `arm_model_version:delay_business_buffer_shortfall_minutes:mean24h${arms}`,
          '{{arm}} {{model_version}}',
        ),
      ],
    }).decimals(2),
    stat({
      id: 29,
      title: 'Reassignment candidates, 24 h',
      description: `High-risk bookings, candidates for a proactive reassignment, per answering source. The plan: about ${PLAN_TARGETS.reassignmentsPerDay} a day.`,
      w: 4,
      h: 5,
      queries: [prom('A', 'source:delay_business_reassignment_candidates:increase24h', '{{source}}')],
    }),
    stat({
      id: 30,
      title: 'Buffer cost, 24 h',
      description: `Buffer minutes, unused and missing, at COST_PER_DELAY_MINUTE; ${paired}. The plan: ${percent(PLAN_TARGETS.costChange)} against the rules.`,
      w: 4,
      h: 5,
      queries: [
        prom('A', `arm_model_version:delay_business_cost:increase24h${arms}`, '{{arm}} {{model_version}}'),
      ],
    }).decimals(0),
  ];
}

function rollout(d: Deployment) {
  return board(d, 'rollout', { tags: ['rollout'], from: 'now-6h', postgres: true, annotated: true }, [
    stat({
      id: 1,
      title: 'ML share of traffic',
      description:
        'The delay-model flag’s ML weight as the replicas read it, and the share ML answered over 5 min (fallbacks and a rollback latch answer with the heuristic).',
      w: 6,
      h: 6,
      unit: 'percent',
      queries: [
        prom('A', 'max(delay_rollout_ml_percentage)', 'flag asks'),
        prom(
          'B',
          '100 * (sum(source:delay_predictions:rate5m{source="ml"}) or vector(0)) / sum(source:delay_predictions:rate5m)',
          'served, 5 min',
        ),
      ],
    }),
    timeseries({
      id: 2,
      title: 'Predictions by variant',
      description: '',
      w: 18,
      h: 6,
      unit: 'reqps',
      queries: [prom('A', 'sum by (variant) (rate(delay_predictions_total[5m]))', '{{variant}}')],
    }),
    timeseries({
      id: 3,
      title: 'Predictions by source',
      description: '',
      w: 12,
      h: 8,
      unit: 'reqps',
      queries: [prom('A', 'source:delay_predictions:rate5m', '{{source}}')],
    }),
    timeseries({
      id: 4,
      title: 'ML fallbacks by reason',
      description: '',
      w: 12,
      h: 8,
      unit: 'reqps',
      queries: [
        prom('A', 'sum by (reason) (rate(delay_prediction_fallbacks_total[5m])) or vector(0)', '{{reason}}'),
      ],
    }),
    stat({
      id: 5,
      title: 'Flag files refused (1 h)',
      description: 'Flag configurations refused; the last good one stays in force.',
      w: 6,
      h: 5,
      queries: [prom('A', 'sum(increase(delay_flags_config_errors_total[1h])) or vector(0)')],
      thresholds: steps('green', [1, 'orange']),
    }),
    stat({
      id: 6,
      title: 'Flag evaluation errors (1 h)',
      description: 'Flag evaluations that failed and used the coded default.',
      w: 6,
      h: 5,
      queries: [prom('A', 'sum(increase(delay_flags_evaluation_errors_total[1h])) or vector(0)')],
      thresholds: steps('green', [1, 'orange']),
    }),
    stat({
      id: 7,
      title: 'Model versions failing to load (1 h)',
      description: 'Failed loads of the versions the flag names (DelayModelNotLoaded pages on any).',
      w: 6,
      h: 5,
      queries: [prom('A', 'sum(increase(delay_models_load_errors_total[1h])) or vector(0)')],
      thresholds: steps('green', [1, 'red']),
    }),
    stat({
      id: 9,
      title: 'Rollbacks by alert (24 h)',
      description:
        'Automatic rollbacks that set ML to 0%, by the alert that asked (delay_rollout_rollbacks_total).',
      w: 6,
      h: 5,
      queries: [
        prom(
          'A',
          'sum by (alertname) (increase(delay_rollout_rollbacks_total[24h])) > 0 or vector(0)',
          '{{alertname}}',
        ),
      ],
      thresholds: steps('green', [1, 'orange']),
    }),
    table({
      id: 8,
      title: 'Rollout changes and rollbacks (audit trail)',
      description:
        'Every change of the delay-model flag made by the rollback webhook, the promoter or the rollout CLI: who, what, why.',
      w: 24,
      h: 9,
      queries: [
        sql(
          'A',
          `select at as time, actor, action, flag, previous_weight, new_weight, model_version, alert_name,
             labels->>'signal' as signal, reason
           from flag_changes where $__timeFilter(at) order by at desc limit 50`,
        ),
      ],
    }),
  ]);
}

function modelQuality(d: Deployment) {
  const mv = '{model_version=~"$model_version"}';
  const armLegend = '{{arm}} {{model_version}}';
  const segment = (counter: string) =>
    `sum by (segment, model_version) (increase(delay_feedback_segment_${counter}_total{arm="ml", model_version=~"$model_version"}[1h]))`;
  const scored = `(${segment('scored')} > 0)`;
  return board(
    d,
    'model-quality',
    {
      tags: ['quality'],
      from: 'now-6h',
      postgres: true,
      annotated: true,
      variables: [modelVersionVariable()],
    },
    [
      timeseries({
        id: 1,
        title: 'MAE, 30 min (minutes)',
        description: `Lines: the ${maeTarget}-minute target (DelayModelMaeDegraded, over 1 h) and the critical ${maeCritical} minutes (DelayModelLosingToRulesFast, over 5 min). ML MAE alone never rolls back: the paired panels below decide (docs/adr/0007-rollback-policy.md).`,
        w: 12,
        h: 8,
        unit: 'm',
        queries: [prom('A', `arm_model_version:delay_feedback_mae_minutes:30m${mv}`, armLegend)],
        lines: maeSteps(),
      }),
      timeseries({
        id: 2,
        title: 'MAE, 24 h (minutes)',
        description: '',
        w: 12,
        h: 8,
        unit: 'm',
        queries: [prom('A', `arm_model_version:delay_feedback_mae_minutes:24h${mv}`, armLegend)],
        lines: maeSteps(),
      }),
      timeseries({
        id: 3,
        title: 'R², 1 h',
        description: '',
        w: 12,
        h: 8,
        queries: [prom('A', `arm_model_version:delay_feedback_r2:1h${mv}`, armLegend)],
      }),
      timeseries({
        id: 4,
        title: '80% interval coverage, 1 h',
        description: '',
        w: 12,
        h: 8,
        unit: 'percentunit',
        queries: [prom('A', `arm_model_version:delay_feedback_interval_coverage:1h${mv}`, armLegend)],
      }),
      timeseries({
        id: 5,
        title: 'Feedback received',
        description: '',
        w: 12,
        h: 8,
        unit: 'reqps',
        queries: [prom('A', 'sum by (outcome) (rate(delay_feedback_events_total[5m]))', '{{outcome}}')],
      }),
      timeseries({
        id: 6,
        title: 'Scored bookings per arm, 1 h',
        description: '',
        w: 12,
        h: 8,
        queries: [prom('A', `arm_model_version:delay_feedback_scored:increase1h${mv}`, armLegend)],
      }),
      timeseries({
        id: 7,
        title: 'ML minus its shadow heuristic, same bookings (minutes)',
        description: `Mean of |ML error| - |shadow error| on ML-served bookings: below 0 ML beats the rules. Above ${PAIRED_BOUND} with z > ${THRESHOLDS.pairedZ} rolls back (with MAE above ${maeCritical} over 5 min, or over 1 h).`,
        w: 12,
        h: 8,
        unit: 'm',
        queries: [
          prom(
            'A',
            `model_version:delay_feedback_paired_difference_minutes:mean5m${mv}`,
            '{{model_version}} 5 min',
          ),
          prom(
            'B',
            `model_version:delay_feedback_paired_difference_minutes:mean1h${mv}`,
            '{{model_version}} 1 h',
          ),
        ],
        lines: pairedSteps(),
      }),
      timeseries({
        id: 8,
        title: 'ML departs from its usual gap to the rules, before feedback (minutes)',
        description: `Label-free: mean |ML - shadow heuristic - the card's gap for the same moment| on the same bookings (about 0.6 when healthy), beside the raw gap, which moves with the hour and the weather. Above ${shadowDeparture.minutes} over ${shadowDeparture.window} and ${shadowDeparture.resetWindow} rolls back (DelayModelFarFromRules).`,
        w: 12,
        h: 8,
        unit: 'm',
        queries: [
          prom(
            'A',
            `model_version:delay_prediction_shadow_departure_minutes:abs_mean5m${mv}`,
            '{{model_version}} |departure| 5 min',
          ),
          prom(
            'B',
            `model_version:delay_prediction_shadow_departure_minutes:mean5m${mv}`,
            '{{model_version}} signed 5 min',
          ),
          prom(
            'C',
            `model_version:delay_prediction_shadow_gap_minutes:mean5m${mv}`,
            '{{model_version}} raw |ML - rules| 5 min',
          ),
        ],
        lines: departureSteps(),
      }),
      timeseries({
        id: 9,
        title: '80% interval coverage by segment, ML, 1 h',
        description:
          "Share of scored ML bookings whose actual delay fell inside the 80% interval, per segment (service/features/segments.ts; the served delay decides long_delay). Lines: the trainer's segment bar; below: too many above or below the interval (delay_feedback_segment_above_interval_total, _below_).",
        w: 12,
        h: 8,
        unit: 'percentunit',
        queries: [
          prom(
            'A',
            `1 - (${segment('below_interval')} + ${segment('above_interval')}) / ${scored}`,
            '{{segment}} {{model_version}}',
          ),
        ],
        lines: steps('red', [SEGMENT_BAR.coverage[0], 'green'], [SEGMENT_BAR.coverage[1], 'red']),
      })
        .min(0)
        .max(1),
      timeseries({
        id: 10,
        title: 'Mean bias by segment, ML, 1 h (minutes, predicted - actual)',
        description: `Mean of predicted - actual delay on scored ML bookings, per segment: negative when the model predicts too little there. The trainer's segment bar is ±${SEGMENT_BAR.maxAbsBias} min.`,
        w: 12,
        h: 8,
        unit: 'm',
        queries: [
          prom(
            'A',
            `(${segment('over_prediction')} - ${segment('under_prediction')}) / ${scored}`,
            '{{segment}} {{model_version}}',
          ),
        ],
        lines: steps('red', [-SEGMENT_BAR.maxAbsBias, 'green'], [SEGMENT_BAR.maxAbsBias, 'red']),
      }),
      timeseries({
        id: 11,
        title: 'R², 24 h',
        description: 'R² per arm over the last day, as the plan reports it.',
        w: 12,
        h: 8,
        queries: [prom('A', `arm_model_version:delay_feedback_r2:24h${mv}`, armLegend)],
      }),
    ],
  );
}

function service(d: Deployment) {
  return board(d, 'service', { tags: ['service'], from: 'now-6h', postgres: true, annotated: true }, [
    timeseries({
      id: 1,
      title: 'Prediction requests',
      description: '',
      w: 12,
      h: 8,
      unit: 'reqps',
      queries: [prom('A', 'endpoint:delay_prediction_requests:rate5m', '{{endpoint}}')],
    }),
    timeseries({
      id: 2,
      title: 'Prediction latency p95 / p99',
      description: `Line: ${ms(latencyP95)}, the latency SLO's bound for single predictions and DelayPredictionLatencyHigh's p95 (10 minutes above it).`,
      w: 12,
      h: 8,
      unit: 's',
      queries: [
        prom('A', 'endpoint:delay_prediction_duration_seconds:p95_5m', 'p95 {{endpoint}}'),
        prom('B', 'endpoint:delay_prediction_duration_seconds:p99_5m', 'p99 {{endpoint}}'),
      ],
      lines: steps('green', [latencyP95, 'red']),
    }),
    timeseries({
      id: 3,
      title: 'HTTP responses by status',
      description: '',
      w: 12,
      h: 8,
      unit: 'reqps',
      queries: [
        prom(
          'A',
          'sum by (http_response_status_code) (rate(http_server_request_duration_count[5m]))',
          '{{http_response_status_code}}',
        ),
      ],
    }),
    timeseries({
      id: 4,
      title: 'Rejected requests by reason',
      description: '',
      w: 12,
      h: 8,
      unit: 'reqps',
      queries: [
        prom(
          'A',
          'sum by (reason) (rate(delay_http_rejected_requests_total[5m])) or vector(0)',
          '{{reason}}',
        ),
      ],
    }),
    timeseries({
      id: 5,
      title: 'ML fallback ratio',
      description: `Rolls back when above ${percent(fallbackRatio.long)} over ${fallbackRatio.window} and above ${percent(fallbackRatio.short)} over the last minute, with ${fallbackRatio.minSamples} ML-assigned bookings (DelayMlErrorRatioHigh). Model errors: errors and timeouts alone, without an unavailable model.`,
      w: 8,
      h: 8,
      unit: 'percentunit',
      queries: [
        prom('A', ':delay_ml_fallback:ratio_rate5m', '5 min'),
        prom('B', ':delay_ml_fallback:ratio_rate1m', '1 min'),
        prom('C', ':delay_ml_error:ratio_rate5m', 'model errors 5 min'),
      ],
      lines: fallbackSteps(),
    }),
    timeseries({
      id: 6,
      title: 'Prediction log queue',
      description: '',
      w: 8,
      h: 8,
      queries: [prom('A', 'sum(delay_prediction_log_queue_depth)')],
    }),
    timeseries({
      id: 7,
      title: 'Predictions not written (1 h)',
      description: '',
      w: 8,
      h: 8,
      queries: [
        prom(
          'A',
          'sum by (reason) (increase(delay_prediction_log_dropped_total[1h])) or vector(0)',
          '{{reason}}',
        ),
      ],
    }),
  ]);
}

function drift(d: Deployment) {
  return board(d, 'drift', { tags: ['drift'], from: 'now-6h', postgres: true, annotated: true }, [
    timeseries({
      id: 1,
      title: 'PSI per feature (5 min)',
      description: `Lines: drift above ${psi.drift} for ${psi.driftFor} alerts (DelayFeatureDrift, ${psi.minObservations} observations in 5 minutes); above ${psi.severe} for ${psi.severeFor} on a non-weather feature that matched its training data within ${psi.fittedWithin} rolls back (DelayFeatureDriftSevere, ${psi.severeMinObservations} observations).`,
      w: 24,
      h: 9,
      queries: [prom('A', 'feature:delay_feature_psi:5m', '{{feature}}')],
      lines: psiSteps(),
    }),
    table({
      id: 2,
      title: 'Live share per bin (5 min)',
      description: '',
      w: 12,
      h: 10,
      unit: 'percentunit',
      queries: [prom('A', 'feature_bin:delay_features_live_share:5m', '{{feature}} {{bin}}')],
    }),
    table({
      id: 3,
      title: 'Training share per bin (baseline)',
      description: '',
      w: 12,
      h: 10,
      unit: 'percentunit',
      queries: [prom('A', 'max by (feature, bin) (delay_features_baseline_ratio)', '{{feature}} {{bin}}')],
    }),
    timeseries({
      id: 4,
      title: 'Observations per feature (5 min)',
      description: '',
      w: 24,
      h: 7,
      queries: [prom('A', 'feature:delay_features_observations:increase5m', '{{feature}}')],
    }),
  ]);
}

function weather(d: Deployment) {
  return board(d, 'weather', { tags: ['weather'], from: 'now-6h', postgres: false, annotated: false }, [
    timeseries({
      id: 1,
      title: 'Lookups by outcome',
      description: '',
      w: 12,
      h: 8,
      unit: 'reqps',
      queries: [prom('A', 'outcome:delay_weather_lookups:rate5m', '{{outcome}}')],
    }),
    stat({
      id: 2,
      title: 'Budget left today',
      description:
        'OpenWeatherMap calls left in today’s budget, as the replicas last saw it (DelayWeatherBudgetExhausted at 0).',
      w: 12,
      h: 8,
      queries: [prom('A', 'min(delay_weather_budget_remaining)')],
      thresholds: steps('red', [1, 'green']),
    }),
    timeseries({
      id: 3,
      title: 'API calls by status',
      description: '',
      w: 12,
      h: 8,
      unit: 'reqps',
      queries: [prom('A', 'sum by (status) (rate(delay_weather_api_calls_total[5m]))', '{{status}}')],
    }),
    timeseries({
      id: 4,
      title: 'API latency p95',
      description: '',
      w: 12,
      h: 8,
      unit: 's',
      queries: [
        prom('A', 'histogram_quantile(0.95, sum by (le) (rate(delay_weather_api_duration_bucket[5m])))'),
      ],
    }),
    timeseries({
      id: 5,
      title: 'Calls refused by reason',
      description: '',
      w: 12,
      h: 8,
      unit: 'reqps',
      queries: [
        prom('A', 'sum by (reason) (rate(delay_weather_calls_refused_total[5m])) or vector(0)', '{{reason}}'),
      ],
    }),
    timeseries({
      id: 6,
      title: 'Redis errors',
      description: '',
      w: 12,
      h: 8,
      unit: 'reqps',
      queries: [
        prom(
          'A',
          'sum by (operation) (rate(delay_weather_cache_errors_total[5m])) or vector(0)',
          '{{operation}}',
        ),
      ],
    }),
  ]);
}

/** A trace id opens its trace; the booking shows as its pseudonym, which the trace carries too. */
const traceLink = [
  {
    id: 'links',
    value: [
      {
        title: `Trace in ${JAEGER.name}`,
        url: '',
        internal: {
          datasourceUid: JAEGER.uid,
          datasourceName: JAEGER.name,
          query: { query: variable('__value.raw') },
        },
      },
    ],
  },
];

function predictions(d: Deployment) {
  return board(d, 'predictions', { tags: ['postgres'], from: 'now-7d', postgres: true, annotated: false }, [
    table({
      id: 1,
      title: 'Latest predictions',
      description:
        'The prediction log of this deployment’s database. Bookings show as their pseudonym (booking_ref, docs/privacy.md), never their id; the actual delay is on the prediction its feedback scores, the booking’s first; a trace id opens the request’s trace.',
      w: 24,
      h: 12,
      queries: [
        sql(
          'A',
          `select p.predicted_at as time, p.booking_ref, p.source, p.variant, p.model_version, p.fallback_reason,
             p.delay_minutes, p.interval_low, p.interval_high, p.weather_source, p.latency_ms,
             s.actual_delay_minutes, p.trace_id
           from predictions p left join scored_predictions s on s.prediction_id = p.id
           where $__timeFilter(p.predicted_at) order by p.predicted_at desc limit 50`,
        ),
      ],
    }).overrideByName('trace_id', traceLink),
    table({
      id: 2,
      title: `Anomalies: absolute error above ${ANOMALY_MINUTES} minutes`,
      description: `Scored predictions (a booking's first) whose absolute error, once feedback came, is above ${ANOMALY_MINUTES} minutes (the manual's critical MAE); bookings by their pseudonym.`,
      w: 24,
      h: 12,
      queries: [
        sql(
          'A',
          `select s.predicted_at as time, p.booking_ref, s.source, s.model_version, s.delay_minutes,
             s.actual_delay_minutes, abs(s.delay_minutes - s.actual_delay_minutes) as absolute_error, p.trace_id
           from scored_predictions s join predictions p on p.id = s.prediction_id
           where $__timeFilter(s.predicted_at) and abs(s.delay_minutes - s.actual_delay_minutes) > ${ANOMALY_MINUTES}
           order by s.predicted_at desc limit 100`,
        ),
      ],
    }).overrideByName('trace_id', traceLink),
  ]);
}

/** Every board of a deployment, by key (its file name without .json). */
export function buildDashboards(deployment: Deployment): Record<BoardKey, dashboard.Dashboard> {
  return {
    overview: overview(deployment),
    rollout: rollout(deployment),
    'model-quality': modelQuality(deployment),
    service: service(deployment),
    drift: drift(deployment),
    weather: weather(deployment),
    predictions: predictions(deployment),
  };
}
