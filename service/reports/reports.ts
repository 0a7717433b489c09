import { extname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { type SQL, sql } from 'drizzle-orm';
import type { Logger } from 'pino';
import {
  type BusinessSettings,
  type BusinessSums,
  businessFigures,
  DEFAULT_BUSINESS_SETTINGS,
  mlAgainstRules,
  NO_BOOKINGS,
} from '../domain/business.js';
import { THRESHOLDS } from '../domain/rollback-policy.js';
import { RISK_RULES } from '../predictors/risk.js';
import type { Db } from '../storage/database.js';
import {
  BOOTSTRAP_MAX_PAIRS,
  BOOTSTRAP_WORKER,
  type BootstrapAnswer,
  type BootstrapJob,
  pairedFromMoments,
} from './paired-comparison.js';
import type {
  AbReport,
  Anomaly,
  ArmMetrics,
  Arms,
  BusinessOutcome,
  DailyReport,
  DailyRow,
  FlagChange,
  MonitoringSummary,
  PairedComparison,
  StoredPrediction,
  SummaryTotals,
} from './report-schemas.js';

export { pairedComparison } from './paired-comparison.js';

type Runner = Pick<Db, 'execute'>;

/** Rows of a raw query, whichever driver ran it (postgres-js answers an array, PGlite an object). */
async function rows<T>(db: Runner, query: SQL): Promise<T[]> {
  const result = (await db.execute(query)) as unknown as T[] | { rows: T[] };
  return Array.isArray(result) ? result : result.rows;
}

/** The prediction's time as RFC 3339 in UTC with milliseconds, as JSON dates are (the driver's text is Postgres's). */
const PREDICTED_AT = sql`to_char(p.predicted_at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') as predicted_at`;

/*
 * The reports read hourly rollups the database keeps as rows arrive (migration 0001, docs/adr/0011-report-rollups.md):
 * a 90-day report sums some 4,000 rows of each, whatever the traffic. A window is exact to the row: the rollups
 * give its whole UTC hours, and the rows of the partial hour at its start are read one by one through the same
 * SQL functions (prediction_terms, scored_terms) that feed the rollups.
 */

/** The last `hours`: its start, and the first whole UTC hour in it. */
function windowOf(hours: number) {
  const start = sql`(now() - make_interval(hours => ${hours}))`;
  return { start, wholeHours: sql`(date_trunc('hour', ${start}, 'UTC') + interval '1 hour')` };
}
type Window = ReturnType<typeof windowOf>;

const PREDICTION_TERMS = ['hour', 'source', 'predictions', 'fallbacks', 'weather_default', 'latency_ms'];
const SCORED_TERMS = [
  'hour',
  'source',
  'model_version',
  'n',
  'abs_error',
  'squared_error',
  'actual',
  'actual_squared',
  'shadow_abs_error',
  'shadow_squared_error',
  'paired_difference',
  'paired_difference_squared',
];

/** Per hour and source: every prediction of the window, re-posts included. */
const predictionTerms = ({ start, wholeHours }: Window) => sql`
  select ${sql.raw(PREDICTION_TERMS.join(', '))} from prediction_hours where hour >= ${wholeHours}
  union all
  select ${sql.raw(PREDICTION_TERMS.map((c) => `t.${c}`).join(', '))}
  from predictions p, prediction_terms(p) t where p.predicted_at > ${start} and p.predicted_at < ${wholeHours}`;

/**
 * Per hour, source and model version: the bookings whose first prediction falls in the window and has feedback.
 * A re-post is never scored, whether its first prediction is in the window or before it.
 */
const scoredTerms = ({ start, wholeHours }: Window) => sql`
  select ${sql.raw(SCORED_TERMS.join(', '))} from scored_hours where hour >= ${wholeHours}
  union all
  select ${sql.raw(SCORED_TERMS.map((c) => `t.${c}`).join(', '))}
  from scored_predictions s, scored_terms(s) t where s.predicted_at > ${start} and s.predicted_at < ${wholeHours}`;

interface ScoredSums {
  source: string;
  model_version: string | null;
  every_version: boolean;
  n: number;
  abs_error: number;
  squared_error: number;
  /** Σ (actual - mean actual)², summed exactly: 0, not float noise, when every actual is the same. */
  actual_deviations: number;
  shadow_abs_error: number;
  shadow_squared_error: number;
  paired_mean: number | null;
  paired_deviations: number | null;
}

const round4 = (x: number) => Math.round(x * 10_000) / 10_000;

/** An arm's accuracy from its sums: MAE, RMSE and R² of `n` scored predictions. */
function armMetrics(n: number, absError: number, squaredError: number, deviations: number): ArmMetrics {
  if (n === 0) return { n, mae: null, rmse: null, r2: null };
  return {
    n,
    mae: round4(absError / n),
    rmse: round4(Math.sqrt(squaredError / n)),
    r2: deviations > 0 ? round4(1 - squaredError / deviations) : null,
  };
}

const NOTHING_SCORED: ScoredSums = {
  source: '',
  model_version: null,
  every_version: true,
  n: 0,
  abs_error: 0,
  squared_error: 0,
  actual_deviations: 0,
  shadow_abs_error: 0,
  shadow_squared_error: 0,
  paired_mean: null,
  paired_deviations: null,
};

/** Predictions, ML, fallbacks, default weather and mean latency over the window: one row, also over none. */
async function totalsOver(db: Runner, window: Window): Promise<SummaryTotals> {
  const [totals] = await rows<SummaryTotals>(
    db,
    sql`select coalesce(sum(predictions), 0)::int as predictions,
               coalesce(sum(predictions) filter (where source = 'ml'), 0)::int as ml,
               coalesce(sum(fallbacks), 0)::int as fallbacks,
               coalesce(sum(weather_default), 0)::int as weather_default,
               round(sum(latency_ms) / nullif(sum(predictions), 0), 3)::float8 as mean_latency_ms
        from (${predictionTerms(window)}) c`,
  );
  return totals as SummaryTotals;
}

async function scoredSums(db: Runner, window: Window) {
  const sums = await rows<ScoredSums>(
    db,
    sql`with terms as (${scoredTerms(window)})
        select source, model_version, grouping(model_version) = 1 as every_version, sum(n)::int as n,
               sum(abs_error)::float8 as abs_error, sum(squared_error)::float8 as squared_error,
               (sum(actual_squared) - sum(actual) * sum(actual) / sum(n))::float8 as actual_deviations,
               sum(shadow_abs_error)::float8 as shadow_abs_error,
               sum(shadow_squared_error)::float8 as shadow_squared_error,
               (sum(paired_difference) / sum(n))::float8 as paired_mean,
               (sum(paired_difference_squared) - sum(paired_difference) * sum(paired_difference) / sum(n))::float8
                 as paired_deviations
        from terms group by grouping sets ((source), (source, model_version)) having sum(n) > 0`,
  );
  const bySource = (source: string) =>
    sums.find((s) => s.source === source && s.every_version) ?? NOTHING_SCORED;
  const served = (s: ScoredSums) => armMetrics(s.n, s.abs_error, s.squared_error, s.actual_deviations);
  const ml = bySource('ml');
  const arms: Arms = {
    ml: served(ml),
    heuristic: served(bySource('heuristic')),
    heuristic_shadow_on_ml: armMetrics(
      ml.n,
      ml.shadow_abs_error,
      ml.shadow_squared_error,
      ml.actual_deviations,
    ),
  };
  const versions = sums
    .filter((s) => s.source === 'ml' && !s.every_version)
    .map((s) => [s.model_version ?? 'none', served(s)] as const)
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return { arms, ml_by_model_version: Object.fromEntries(versions), ml };
}

/** The arms of the business figures: the served sources, and the rules' shadow answer on ML-served bookings. */
type BusinessArm = 'ml' | 'heuristic' | 'heuristic_shadow_on_ml';

/**
 * The business figures of a window, per arm, from the scored bookings themselves (scored_predictions): the lateness
 * threshold is a setting, so no rollup can hold its counts. The terms are service/domain/business.ts's
 * bookingOutcome in SQL; 375,000 scored bookings in 30 days (50,000 predictions a day, a quarter with feedback)
 * took the whole A/B report 0.32-0.36 s on Postgres.
 */
async function businessOutcome(
  db: Runner,
  { start }: Window,
  { lateThresholdMinutes: t, costPerDelayMinute }: BusinessSettings,
): Promise<BusinessOutcome> {
  const found = await rows<BusinessSums & { arm: BusinessArm }>(
    db,
    sql`select arm, count(*)::int as n,
               count(*) filter (where actual >= ${t})::int as late,
               count(*) filter (where predicted >= ${t})::int as flagged,
               count(*) filter (where predicted >= ${t} and actual >= ${t})::int as anticipated,
               count(*) filter (where predicted >= ${t} and actual < ${t})::int as false_alarms,
               sum(greatest(greatest(predicted, 0) - greatest(actual, 0), 0))::float8 as buffer_unused_minutes,
               sum(greatest(greatest(actual, 0) - greatest(predicted, 0), 0))::float8 as buffer_shortfall_minutes
        from (
          select source as arm, delay_minutes as predicted, actual_delay_minutes as actual
          from scored_predictions where predicted_at > ${start}
          union all
          select 'heuristic_shadow_on_ml', shadow_heuristic_delay, actual_delay_minutes
          from scored_predictions where source = 'ml' and predicted_at > ${start}
        ) r
        group by arm`,
  );
  const byArm = new Map(found.map(({ arm, ...sums }) => [arm, sums]));
  const sums = (arm: BusinessArm): BusinessSums => byArm.get(arm) ?? NO_BOOKINGS;
  const figures = (arm: BusinessArm) => businessFigures(sums(arm), costPerDelayMinute);
  return {
    late_threshold_minutes: t,
    cost_per_delay_minute: costPerDelayMinute ?? null,
    ml: figures('ml'),
    heuristic: figures('heuristic'),
    heuristic_shadow_on_ml: figures('heuristic_shadow_on_ml'),
    ml_against_rules: mlAgainstRules(sums('ml'), sums('heuristic_shadow_on_ml')),
  };
}

/**
 * One worker thread runs the bootstraps, one job at a time: a report never holds the event loop that answers
 * predictions, and reports asked at once use one core between them. Started on the first job; held (ref) only
 * while a job waits, so an idle worker never keeps a process alive; a worker that fails fails its jobs and
 * the next job starts another.
 */
export function bootstrapThread(logger?: Logger) {
  // The file beside this one, .ts from the sources (tsx, vitest), .js from the compiled image.
  const file = new URL(`./paired-comparison${extname(fileURLToPath(import.meta.url))}`, import.meta.url);
  let worker: Worker | undefined;
  let nextId = 0;
  const waiting = new Map<number, { resolve: (r: PairedComparison) => void; reject: (e: Error) => void }>();

  const failAll = (err: Error) => {
    for (const job of waiting.values()) job.reject(err);
    waiting.clear();
  };
  const start = () => {
    const started = new Worker(file, { workerData: BOOTSTRAP_WORKER });
    started.on('message', (answer: BootstrapAnswer) => {
      const job = waiting.get(answer.id);
      waiting.delete(answer.id);
      if (waiting.size === 0) started.unref();
      if ('error' in answer) job?.reject(new Error(`paired bootstrap: ${answer.error}`));
      else job?.resolve(answer.result);
    });
    started.on('error', (err) => {
      logger?.error(
        { err: err.message },
        'the paired bootstrap worker failed; the next report starts another',
      );
      failAll(err);
    });
    started.on('exit', (code) => {
      if (worker === started) worker = undefined;
      failAll(new Error(`the paired bootstrap worker exited (code ${code})`));
    });
    return started;
  };

  return {
    run(diffs: string): Promise<PairedComparison> {
      worker ??= start();
      worker.ref();
      const id = nextId++;
      const answer = new Promise<PairedComparison>((resolve, reject) => waiting.set(id, { resolve, reject }));
      worker.postMessage({ id, diffs } satisfies BootstrapJob);
      return answer;
    },
    async close() {
      const stopping = worker;
      worker = undefined;
      await stopping?.terminate();
    },
  };
}

/**
 * Reports over stored predictions and feedback. The first prediction served for a booking is the one scored,
 * as in the service's counters (ADR 0004): a later re-post of the same id is listed, never scored.
 */
export function createReports(
  db: Db,
  { logger, business = DEFAULT_BUSINESS_SETTINGS }: { logger?: Logger; business?: BusinessSettings } = {},
) {
  const bootstrap = bootstrapThread(logger);
  /** The reads of one report see one snapshot: the rollups, the partial hour and the pairs agree. */
  const snapshot = <T>(read: (tx: Runner) => Promise<T>) =>
    db.transaction(read, { isolationLevel: 'repeatable read', accessMode: 'read only' });

  return {
    /**
     * The last `days` (x 24 h) of scored bookings, all of them: ML against the heuristic, per arm and paired, in
     * accuracy and in the business figures.
     */
    async abReport({ days = 30 }: { days?: number } = {}): Promise<AbReport> {
      const window = windowOf(days * 24);
      const { scored, outcome, diffs } = await snapshot(async (tx) => {
        const scored = await scoredSums(tx, window);
        const outcome = await businessOutcome(tx, window, business);
        if (scored.ml.n === 0 || scored.ml.n > BOOTSTRAP_MAX_PAIRS)
          return { scored, outcome, diffs: undefined };
        // In a stable order: the seeded bootstrap gives the same interval for the same data.
        const [pairs] = await rows<{ diffs: string }>(
          tx,
          sql`select coalesce(string_agg(t.paired_difference::text, ',' order by s.predicted_at desc, s.booking_id), '') as diffs
              from scored_predictions s, scored_terms(s) t
              where s.source = 'ml' and s.predicted_at > ${window.start}`,
        );
        return { scored, outcome, diffs: pairs?.diffs ?? '' };
      });
      const { ml } = scored;
      return {
        window_days: days,
        arms: scored.arms,
        ml_by_model_version: scored.ml_by_model_version,
        paired:
          diffs !== undefined
            ? await bootstrap.run(diffs)
            : pairedFromMoments(ml.n, ml.paired_mean ?? 0, ml.paired_deviations ?? 0),
        business: outcome,
      };
    },

    async summary(): Promise<MonitoringSummary> {
      const window = windowOf(24);
      return snapshot(async (tx) => {
        const totals = await totalsOver(tx, window);
        const { arms } = await scoredSums(tx, window);
        return { window: '24h', ...totals, accuracy: arms };
      });
    },

    /**
     * The last 24 hours for the people who run the service: volume and ML share, accuracy per arm, the business
     * figures, reassignment candidates, anomalies, and the rollout's changes with its rollbacks (the audit table).
     */
    dailyReport(): Promise<DailyReport> {
      const window = windowOf(24);
      const { high } = RISK_RULES;
      return snapshot(async (tx) => {
        const totals = await totalsOver(tx, window);
        const { predictions, ml } = totals;
        const { arms } = await scoredSums(tx, window);
        // risk_level high as service/predictors/risk.ts gives it, from the stored answer (re-posts counted, as in
        // delay_business_reassignment_candidates_total).
        const [candidates] = await rows<{ ml: number; heuristic: number }>(
          tx,
          sql`select count(*) filter (where source = 'ml')::int as ml,
                     count(*) filter (where source = 'heuristic')::int as heuristic
              from predictions
              where predicted_at > ${window.start}
                and (delay_minutes >= ${high.delayAtLeast} or interval_high >= ${high.highAtLeast})`,
        );
        const [anomalies] = await rows<{ n: number }>(
          tx,
          sql`select count(*)::int as n from scored_predictions
              where predicted_at > ${window.start}
                and abs(delay_minutes - actual_delay_minutes) > ${THRESHOLDS.maeCritical}`,
        );
        const changes = await rows<FlagChange>(
          tx,
          sql`select to_char(at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') as at, actor, action,
                     previous_weight::float8 as previous_weight, new_weight::float8 as new_weight, model_version,
                     reason, alert_name
              from flag_changes where at > ${window.start} order by at, id`,
        );
        return {
          window: '24h',
          generated_at: new Date().toISOString(),
          ...totals,
          ml_share: predictions > 0 ? round4(ml / predictions) : null,
          accuracy: arms,
          business: await businessOutcome(tx, window, business),
          reassignment_candidates: candidates ?? { ml: 0, heuristic: 0 },
          anomalies: anomalies?.n ?? 0,
          rollbacks: changes.filter((c) => c.action === 'rollback').length,
          // From Prometheus, not the database: the CLI adds it when PROMETHEUS_URL is set.
          slo_budget: null,
          flag_changes: changes,
        };
      });
    },

    daily(days: number) {
      const window = windowOf(days * 24);
      const day = (column: string) => sql.raw(`to_char(${column} at time zone 'UTC', 'YYYY-MM-DD')`);
      const mae = (source: string) =>
        sql.raw(
          `round(sum(abs_error) filter (where source = '${source}') / nullif(sum(n) filter (where source = '${source}'), 0), 4)`,
        );
      return snapshot((tx) =>
        rows<DailyRow>(
          tx,
          sql`with counts as (
                select ${day('hour')} as day, sum(predictions) as predictions,
                       sum(predictions) filter (where source = 'ml') as ml
                from (${predictionTerms(window)}) c group by 1),
              scored as (
                select ${day('hour')} as day, sum(n) as with_feedback, ${mae('ml')} as mae_ml,
                       ${mae('heuristic')} as mae_heuristic
                from (${scoredTerms(window)}) s group by 1)
              select c.day, c.predictions::int as predictions, coalesce(c.ml, 0)::int as ml,
                     coalesce(s.with_feedback, 0)::int as with_feedback, s.mae_ml::float8 as mae_ml,
                     s.mae_heuristic::float8 as mae_heuristic
              from counts c left join scored s on s.day = c.day
              where c.predictions > 0 order by c.day desc`,
        ),
      );
    },

    latest(limit: number) {
      return rows<StoredPrediction>(
        db,
        sql`select p.booking_id, ${PREDICTED_AT}, p.source, p.variant, p.model_version, p.fallback_reason,
                   p.delay_minutes, p.interval_low, p.interval_high, p.shadow_heuristic_delay,
                   p.weather_source, p.latency_ms, f.actual_delay_minutes as actual_delay_minutes
            from predictions p left join feedback f on f.booking_id = p.booking_id
            order by p.predicted_at desc, p.id desc limit ${limit}`,
      );
    },

    anomalies(thresholdMinutes: number, limit = 100) {
      return rows<Anomaly>(
        db,
        sql`select p.booking_id, ${PREDICTED_AT}, p.source, p.model_version, p.delay_minutes,
                   f.actual_delay_minutes, abs(p.delay_minutes - f.actual_delay_minutes) as absolute_error
            from predictions p join feedback f on f.booking_id = p.booking_id
            where p.predicted_at > now() - interval '7 days'
              and abs(p.delay_minutes - f.actual_delay_minutes) > ${thresholdMinutes}
            order by p.predicted_at desc limit ${limit}`,
      );
    },

    /** Deletes predictions and feedback older than `days`; the flag audit trail is kept. */
    async purge(days: number) {
      const deleted = await rows<{ predictions: number; feedback: number }>(
        db,
        sql`with p as (delete from predictions where predicted_at < now() - make_interval(days => ${days}) returning 1),
                 f as (delete from feedback where received_at < now() - make_interval(days => ${days}) returning 1)
            select (select count(*) from p)::int as predictions, (select count(*) from f)::int as feedback`,
      );
      return deleted[0] ?? { predictions: 0, feedback: 0 };
    },

    /** Stops the bootstrap worker. */
    close: () => bootstrap.close(),
  };
}

export type Reports = ReturnType<typeof createReports>;

/** Purges what is older than `days` now and every `everyMs` after; returns the stop. A failure waits for the next. */
export function scheduleRetention(
  reports: Pick<Reports, 'purge'>,
  { days, logger, everyMs = 86_400_000 }: { days: number; logger: Logger; everyMs?: number },
) {
  const purge = async () => {
    try {
      logger.info({ retention_days: days, ...(await reports.purge(days)) }, 'retention purge');
    } catch (err) {
      logger.error({ err: (err as Error).message }, 'retention purge failed; next attempt in 24 h');
    }
  };
  void purge();
  const timer = setInterval(purge, everyMs);
  timer.unref();
  return () => clearInterval(timer);
}
