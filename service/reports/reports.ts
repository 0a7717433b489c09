import { sql } from 'drizzle-orm';
import type { Logger } from 'pino';
import { uniformFloat64 } from 'pure-rand/distribution/uniformFloat64';
import { xoroshiro128plus } from 'pure-rand/generator/xoroshiro128plus';
import type { Db } from '../storage/database.js';
import type {
  AbReport,
  Anomaly,
  ArmMetrics,
  DailyRow,
  MonitoringSummary,
  PairedComparison,
  StoredPrediction,
  SummaryTotals,
} from './report-schemas.js';

/** Rows of a raw query, whichever driver ran it (postgres-js answers an array, PGlite an object). */
async function rows<T>(db: Db, query: ReturnType<typeof sql>): Promise<T[]> {
  const result = (await db.execute(query)) as unknown as T[] | { rows: T[] };
  return Array.isArray(result) ? result : result.rows;
}

/** The prediction's time as RFC 3339 in UTC with milliseconds, as JSON dates are (the driver's text is Postgres's). */
const PREDICTED_AT = sql`to_char(p.predicted_at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') as predicted_at`;

export function armMetrics(pairs: { predicted: number; actual: number }[]): ArmMetrics {
  const n = pairs.length;
  if (n === 0) return { n, mae: null, rmse: null, r2: null };
  let abs = 0;
  let sq = 0;
  let sumY = 0;
  for (const p of pairs) {
    abs += Math.abs(p.predicted - p.actual);
    sq += (p.predicted - p.actual) ** 2;
    sumY += p.actual;
  }
  const mean = sumY / n;
  const sst = pairs.reduce((s, p) => s + (p.actual - mean) ** 2, 0);
  const r = (x: number) => Math.round(x * 10_000) / 10_000;
  return { n, mae: r(abs / n), rmse: r(Math.sqrt(sq / n)), r2: sst > 0 ? r(1 - sq / sst) : null };
}

export const MIN_PAIRS = 30;

/** Percentile bootstrap of the mean difference, seeded so the same data gives the same interval. */
export function pairedComparison(diffs: number[], resamples = 1000, seed = 1): PairedComparison {
  const n = diffs.length;
  if (n === 0)
    return { n, mean_difference: null, ci95: null, verdict: 'not_yet_known', pairs_needed: MIN_PAIRS };
  const mean = diffs.reduce((s, d) => s + d, 0) / n;
  const sd = Math.sqrt(diffs.reduce((s, d) => s + (d - mean) ** 2, 0) / Math.max(n - 1, 1));
  const rng = xoroshiro128plus(seed);
  const means = new Float64Array(resamples);
  for (let b = 0; b < resamples; b++) {
    let total = 0;
    for (let i = 0; i < n; i++) total += diffs[Math.floor(uniformFloat64(rng) * n)] as number;
    means[b] = total / n;
  }
  means.sort();
  const r = (x: number) => Math.round(x * 10_000) / 10_000;
  const ci: [number, number] = [
    r(means[Math.floor(0.025 * resamples)] as number),
    r(means[Math.ceil(0.975 * resamples) - 1] as number),
  ];
  const known = n >= MIN_PAIRS && (ci[1] < 0 || ci[0] > 0);
  // On the difference as reported: float noise around 0 (1e-16) would ask for some 1e31 pairs.
  const reported = r(mean);
  const needed =
    reported !== 0 ? Math.max(MIN_PAIRS, Math.ceil(((1.96 * sd) / Math.abs(reported)) ** 2)) : null;
  return {
    n,
    mean_difference: reported,
    ci95: ci,
    verdict: known ? (ci[1] < 0 ? 'ml_better' : 'ml_worse') : 'not_yet_known',
    pairs_needed: known ? null : needed,
  };
}

interface ScoredRow {
  source: string;
  model_version: string | null;
  predicted: number;
  shadow: number;
  actual: number;
}

/**
 * Reports over stored predictions and feedback. The first prediction served for a booking is the one scored,
 * as in the service's counters (ADR 0004): a later re-post of the same id is listed, never scored.
 */
export function createReports(db: Db) {
  const scored = (days: number, limit: number) =>
    rows<ScoredRow>(
      db,
      sql`with served as (
            select distinct on (booking_id) booking_id, source, model_version, delay_minutes, shadow_heuristic_delay, predicted_at
            from predictions where predicted_at > now() - make_interval(days => ${days})
            order by booking_id, predicted_at, id)
          select s.source, s.model_version, s.delay_minutes as predicted, s.shadow_heuristic_delay as shadow,
                 f.actual_delay_minutes as actual
          from served s join feedback f on f.booking_id = s.booking_id
          order by s.predicted_at desc limit ${limit}`,
    );

  return {
    async abReport({ days = 30, limit = 50_000 }: { days?: number; limit?: number } = {}): Promise<AbReport> {
      const data = (await scored(days, limit)).map((r) => ({
        ...r,
        predicted: Number(r.predicted),
        shadow: Number(r.shadow),
        actual: Number(r.actual),
      }));
      const ml = data.filter((r) => r.source === 'ml');
      const versions = [...new Set(ml.map((r) => r.model_version ?? 'none'))].sort();
      return {
        window_days: days,
        arms: {
          ml: armMetrics(ml),
          heuristic: armMetrics(data.filter((r) => r.source === 'heuristic')),
          heuristic_shadow_on_ml: armMetrics(ml.map((r) => ({ predicted: r.shadow, actual: r.actual }))),
        },
        ml_by_model_version: Object.fromEntries(
          versions.map((v) => [v, armMetrics(ml.filter((r) => (r.model_version ?? 'none') === v))]),
        ),
        paired: pairedComparison(
          ml.map((r) => Math.abs(r.predicted - r.actual) - Math.abs(r.shadow - r.actual)),
        ),
      };
    },

    async summary(): Promise<MonitoringSummary> {
      const [totals] = await rows<SummaryTotals>(
        db,
        sql`select count(*)::int as predictions,
                   count(*) filter (where source = 'ml')::int as ml,
                   count(*) filter (where fallback_reason is not null)::int as fallbacks,
                   count(*) filter (where weather_source = 'default')::int as weather_default,
                   round(avg(latency_ms)::numeric, 3)::float as mean_latency_ms
            from predictions where predicted_at > now() - interval '24 hours'`,
      );
      const ab = await this.abReport({ days: 1 });
      // An aggregate without a group by answers one row, also over no predictions.
      return { window: '24h', ...(totals as SummaryTotals), accuracy: ab.arms };
    },

    daily(days: number) {
      return rows<DailyRow>(
        db,
        sql`with p as (
              select date_trunc('day', predicted_at at time zone 'UTC') as day, p.source, p.delay_minutes,
                     case when row_number() over (partition by p.booking_id order by p.predicted_at, p.id) = 1
                          then f.actual_delay_minutes end as actual
              from predictions p left join feedback f on f.booking_id = p.booking_id
              where predicted_at > now() - make_interval(days => ${days}))
            select to_char(day, 'YYYY-MM-DD') as day, count(*)::int as predictions,
                   count(*) filter (where source = 'ml')::int as ml,
                   count(actual)::int as with_feedback,
                   round(avg(abs(delay_minutes - actual)) filter (where source = 'ml')::numeric, 4)::float as mae_ml,
                   round(avg(abs(delay_minutes - actual)) filter (where source = 'heuristic')::numeric, 4)::float as mae_heuristic
            from p group by day order by day desc`,
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
