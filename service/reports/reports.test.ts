import { type SQL, sql } from 'drizzle-orm';
import { afterEach, describe, expect, it } from 'vitest';
import { feedback, predictions } from '../../db/schema.js';
import {
  addOutcome,
  type BusinessSettings,
  bookingOutcome,
  businessFigures,
  DEFAULT_BUSINESS_SETTINGS,
  mlAgainstRules,
  NO_BOOKINGS,
} from '../domain/business.js';
import type { Database } from '../storage/database.js';
import type { PredictionRow } from '../storage/prediction-log.js';
import {
  databaseEngines,
  freshPostgres,
  postgresAvailable,
  predictionRow as row,
} from '../test-support/databases.js';
import { testService } from '../test-support/service.js';
import { BOOTSTRAP_MAX_PAIRS, pairedComparison, pairedFromMoments } from './paired-comparison.js';
import type { ArmMetrics } from './report-schemas.js';
import { bootstrapThread, createReports, type Reports } from './reports.js';

const hasPostgres = await postgresAvailable();
const open: { close(): Promise<void> }[] = [];
afterEach(async () => {
  for (const x of open.splice(0).reverse()) await x.close();
});

const HOUR = 3_600_000;
const DAY = 24 * HOUR;

async function rows<T>(d: Database, query: SQL): Promise<T[]> {
  const result = (await d.db.execute(query)) as unknown as T[] | { rows: T[] };
  return Array.isArray(result) ? result : result.rows;
}

/** A seeded generator (mulberry32): the same data on every run. */
function random(seed: number) {
  let a = seed;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296;
  };
}

const round4 = (x: number) => Math.round(x * 10_000) / 10_000;

/** An arm's accuracy the plain way, from its pairs (as the reports computed it before the rollups). */
function plainArm(pairs: { predicted: number; actual: number }[]): ArmMetrics {
  const n = pairs.length;
  if (n === 0) return { n, mae: null, rmse: null, r2: null };
  const mean = pairs.reduce((s, p) => s + p.actual, 0) / n;
  const sse = pairs.reduce((s, p) => s + (p.predicted - p.actual) ** 2, 0);
  const sst = pairs.reduce((s, p) => s + (p.actual - mean) ** 2, 0);
  return {
    n,
    mae: round4(pairs.reduce((s, p) => s + Math.abs(p.predicted - p.actual), 0) / n),
    rmse: round4(Math.sqrt(sse / n)),
    r2: sst > 0 ? round4(1 - sse / sst) : null,
  };
}

interface Scored {
  booking_id: string;
  predicted_at: string;
  source: string;
  model_version: string | null;
  predicted: number;
  shadow: number;
  actual: number;
}

/**
 * What the reports must answer, computed from the raw tables: each booking's first stored prediction, scored when
 * it has feedback and falls in the window; every prediction in the window counted.
 */
async function expected(d: Database, hours: number, business: BusinessSettings = DEFAULT_BUSINESS_SETTINGS) {
  const scored = (
    await rows<Scored>(
      d,
      sql`with first as (
            select distinct on (booking_id) * from predictions order by booking_id, predicted_at, id)
          select f.booking_id, to_char(f.predicted_at at time zone 'UTC', 'YYYY-MM-DD') as predicted_at, f.source,
                 f.model_version, f.delay_minutes as predicted, f.shadow_heuristic_delay as shadow,
                 fb.actual_delay_minutes as actual
          from first f join feedback fb on fb.booking_id = f.booking_id
          where f.predicted_at > now() - make_interval(hours => ${hours})
          order by f.predicted_at desc, f.booking_id`,
    )
  ).map((r) => ({
    ...r,
    predicted: Number(r.predicted),
    shadow: Number(r.shadow),
    actual: Number(r.actual),
  }));
  const served = (
    await rows<{ day: string; source: string; fallback: boolean; weather_default: boolean; latency: number }>(
      d,
      sql`select to_char(predicted_at at time zone 'UTC', 'YYYY-MM-DD') as day, source,
                 fallback_reason is not null as fallback, weather_source = 'default' as weather_default,
                 latency_ms::float8 as latency
          from predictions where predicted_at > now() - make_interval(hours => ${hours})`,
    )
  ).map((r) => ({ ...r, latency: Number(r.latency) }));
  const ml = scored.filter((r) => r.source === 'ml');
  const versions = [...new Set(ml.map((r) => r.model_version ?? 'none'))].sort();
  const arms = {
    ml: plainArm(ml),
    heuristic: plainArm(scored.filter((r) => r.source === 'heuristic')),
    heuristic_shadow_on_ml: plainArm(ml.map((r) => ({ predicted: r.shadow, actual: r.actual }))),
  };
  const diffs = ml.map((r) => Math.abs(r.predicted - r.actual) - Math.abs(r.shadow - r.actual));
  const tally = (pairs: { predicted: number; actual: number }[]) =>
    pairs.reduce(
      (sums, p) => addOutcome(sums, bookingOutcome(p.predicted, p.actual, business.lateThresholdMinutes)),
      NO_BOOKINGS,
    );
  const shadowSums = tally(ml.map((r) => ({ predicted: r.shadow, actual: r.actual })));
  const days = [...new Set(served.map((r) => r.day))].sort().reverse();
  const maeOf = (xs: Scored[]) =>
    xs.length === 0 ? null : round4(xs.reduce((s, r) => s + Math.abs(r.predicted - r.actual), 0) / xs.length);
  return {
    arms,
    ml_by_model_version: Object.fromEntries(
      versions.map((v) => [v, plainArm(ml.filter((r) => (r.model_version ?? 'none') === v))]),
    ),
    diffs,
    business: {
      late_threshold_minutes: business.lateThresholdMinutes,
      cost_per_delay_minute: business.costPerDelayMinute ?? null,
      ml: businessFigures(tally(ml), business.costPerDelayMinute),
      heuristic: businessFigures(
        tally(scored.filter((r) => r.source === 'heuristic')),
        business.costPerDelayMinute,
      ),
      heuristic_shadow_on_ml: businessFigures(shadowSums, business.costPerDelayMinute),
      ml_against_rules: mlAgainstRules(tally(ml), shadowSums),
    },
    daily: days.map((day) => {
      const ofDay = served.filter((r) => r.day === day);
      const scoredOfDay = scored.filter((r) => r.predicted_at === day);
      return {
        day,
        predictions: ofDay.length,
        ml: ofDay.filter((r) => r.source === 'ml').length,
        with_feedback: scoredOfDay.length,
        mae_ml: maeOf(scoredOfDay.filter((r) => r.source === 'ml')),
        mae_heuristic: maeOf(scoredOfDay.filter((r) => r.source === 'heuristic')),
      };
    }),
    totals: {
      predictions: served.length,
      ml: served.filter((r) => r.source === 'ml').length,
      fallbacks: served.filter((r) => r.fallback).length,
      weather_default: served.filter((r) => r.weather_default).length,
      mean_latency_ms:
        served.length === 0
          ? null
          : Math.round((served.reduce((s, r) => s + r.latency, 0) / served.length) * 1000) / 1000,
    },
  };
}

/** Equal, numbers within the last reported digit (4 decimals): sums in numeric against sums in doubles. */
function expectClose(actual: unknown, wanted: unknown, path = '$') {
  if (typeof wanted === 'number' && typeof actual === 'number') {
    expect(Math.abs(actual - wanted), `${path}: ${actual} against ${wanted}`).toBeLessThanOrEqual(1.0001e-4);
  } else if (wanted && typeof wanted === 'object') {
    expect(actual, path).toBeTypeOf('object');
    expect(Object.keys(actual as object).sort(), path).toEqual(Object.keys(wanted).sort());
    for (const [k, v] of Object.entries(wanted))
      expectClose((actual as Record<string, unknown>)[k], v, `${path}.${k}`);
  } else {
    expect(actual, path).toEqual(wanted);
  }
}

async function expectReportsToMatch(d: Database, reports: Reports, days: number) {
  const want = await expected(d, days * 24);
  const ab = await reports.abReport({ days });
  expectClose(ab.arms, want.arms, `ab(${days}).arms`);
  expectClose(ab.ml_by_model_version, want.ml_by_model_version, `ab(${days}).ml_by_model_version`);
  expectClose(ab.paired, pairedComparison(want.diffs), `ab(${days}).paired`);
  expectClose(ab.business, want.business, `ab(${days}).business`);
  if (days <= 90) expectClose(await reports.daily(days), want.daily, `daily(${days})`);
  return want;
}

const engines = databaseEngines(hasPostgres);

describe.each(engines)('reports on %s', (_name, fresh, available) => {
  async function database() {
    const d = await fresh();
    open.push(d);
    const reports = createReports(d.db);
    open.push(reports);
    return { d, reports };
  }

  it.skipIf(!available)(
    'answer what the stored rows say, window by window, through re-posts, corrections, deletions and a purge',
    async () => {
      const { d, reports } = await database();
      const next = random(28);
      const now = Date.now();
      // Ten days of bookings, none within 10 minutes of a window's start (1, 7 and 8 days back): the reports and
      // the plain computation read `now` a few milliseconds apart.
      const ago = () => {
        for (;;) {
          const t = next() * 10 * DAY + 60_000;
          if ([1, 7, 8].every((n) => Math.abs(t - n * DAY) > 10 * 60_000)) return t;
        }
      };
      const all: PredictionRow[] = [];
      const actuals = new Map<string, number>();
      for (let i = 0; i < 400; i++) {
        const id = `b-${String(i).padStart(4, '0')}`;
        const first = ago();
        const ml = next() < 0.6;
        const actual = -5 + next() * 40;
        actuals.set(id, actual);
        all.push(
          row(id, {
            predictedAt: new Date(now - first),
            source: ml ? 'ml' : 'heuristic',
            variant: ml ? 'gbt-v2' : 'heuristic',
            modelVersion: ml ? (next() < 0.3 ? 'gbt-v0' : 'gbt-v2') : null,
            fallbackReason: !ml && next() < 0.1 ? 'model_timeout' : null,
            delayMinutes: actual + (next() - 0.5) * 8,
            shadowHeuristicDelay: actual + (next() - 0.3) * 10,
            weatherSource: next() < 0.2 ? 'default' : 'cache',
            latencyMs: next() * 40,
          }),
        );
        // A re-post of the same id later on, with absurd answers: listed and counted, never scored.
        if (next() < 0.15) {
          const later = Math.max(60_000, first - next() * 3 * DAY);
          if ([1, 7, 8].every((n) => Math.abs(later - n * DAY) > 10 * 60_000))
            all.push(
              row(id, { predictedAt: new Date(now - later), delayMinutes: 500, shadowHeuristicDelay: 400 }),
            );
        }
      }
      for (let i = 0; i < all.length; i += 97) await d.db.insert(predictions).values(all.slice(i, i + 97));
      const firsts = all.filter((r, i) => all.findIndex((x) => x.bookingId === r.bookingId) === i);
      const withFeedback = firsts.filter(() => next() < 0.7);
      for (let i = 0; i < withFeedback.length; i += 50)
        await d.db.insert(feedback).values(
          withFeedback.slice(i, i + 50).map((r) => ({
            bookingId: r.bookingId,
            actualDelayMinutes: actuals.get(r.bookingId) as number,
          })),
        );
      // Corrections of some actuals (one statement), and feedback withdrawn for a few bookings.
      const corrected = withFeedback.filter((_, i) => i % 9 === 0).map((r) => r.bookingId);
      await d.db.execute(
        sql`update feedback set actual_delay_minutes = actual_delay_minutes * 1.5 + 2
            where booking_id in (${sql.join(
              corrected.map((id) => sql`${id}`),
              sql`, `,
            )})`,
      );
      await d.db.execute(sql`delete from feedback where booking_id in ('b-0003', 'b-0004', 'b-0005')`);

      for (const days of [1, 7, 30, 365]) await expectReportsToMatch(d, reports, days);
      const last24h = await expected(d, 24);
      const summary = await reports.summary();
      expectClose(summary, { window: '24h', ...last24h.totals, accuracy: last24h.arms });
      // Both paths of the interval ran: enough pairs and data spread to decide, with the bootstrap.
      expect((await reports.abReport({ days: 30 })).paired.n).toBeGreaterThan(100);

      // The purge deletes what is older than 8 days: a booking first predicted before is gone from the reports,
      // its re-post inside the 8 days counted, still not scored.
      const within8 = await expected(d, 8 * 24);
      await reports.purge(8);
      const ab = await reports.abReport({ days: 30 });
      expectClose(ab.arms, within8.arms);
      expectClose(ab.paired, pairedComparison(within8.diffs));
      expectClose(ab.business, within8.business);
      expectClose(await reports.daily(30), within8.daily);
    },
    60_000,
  );

  it.skipIf(!available)(
    'never score a re-post whose first prediction is older than the window, in any report',
    async () => {
      const { d, reports } = await database();
      const now = Date.now();
      await d.db.insert(predictions).values([
        row('early', { predictedAt: new Date(now - 10 * DAY), delayMinutes: 5 }),
        row('early', {
          predictedAt: new Date(now - 12 * HOUR),
          delayMinutes: 900,
          shadowHeuristicDelay: 900,
        }),
      ]);
      await d.db.insert(feedback).values({ bookingId: 'early', actualDelayMinutes: 6 });

      for (const days of [1, 7])
        expect((await reports.abReport({ days })).arms.heuristic.n, `${days}`).toBe(0);
      expect((await reports.abReport({ days: 30 })).arms.heuristic).toMatchObject({ n: 1, mae: 1 });
      expect(await reports.daily(7)).toEqual([
        {
          day: new Date(now - 12 * HOUR).toISOString().slice(0, 10),
          predictions: 1,
          ml: 0,
          with_feedback: 0,
          mae_ml: null,
          mae_heuristic: null,
        },
      ]);
      const summary = await reports.summary();
      expect(summary).toMatchObject({ predictions: 1, accuracy: { heuristic: { n: 0, mae: null } } });
    },
  );

  it.skipIf(!available)('gives no R² to an arm whose actuals are all the same, not float noise', async () => {
    const { d, reports } = await database();
    await d.db
      .insert(predictions)
      .values(['x', 'y', 'z'].map((id, i) => row(id, { delayMinutes: 5 + i * 0.7 })));
    await d.db
      .insert(feedback)
      .values(['x', 'y', 'z'].map((id) => ({ bookingId: id, actualDelayMinutes: 0.1 })));
    expect((await reports.abReport({ days: 1 })).arms.heuristic).toMatchObject({ n: 3, r2: null });
  });

  it.skipIf(!available)(
    'gives the business figures per arm and paired, at the configured threshold and cost, and no share without its bookings',
    async () => {
      const d = await fresh();
      open.push(d);
      const reports = createReports(d.db, { business: { lateThresholdMinutes: 10, costPerDelayMinute: 2 } });
      open.push(reports);
      const ml = { source: 'ml', variant: 'gbt-v2', modelVersion: 'gbt-v2' } as const;
      const twoDaysAgo = new Date(Date.now() - 2 * DAY);
      await d.db.insert(predictions).values([
        // Late trips, two days ago: ML 12 catches 15 (3 min short), its shadow 6 misses by 9; the rules served 6
        // and missed 12 by 6.
        row('caught', { ...ml, predictedAt: twoDaysAgo, delayMinutes: 12, shadowHeuristicDelay: 6 }),
        row('missed', { predictedAt: twoDaysAgo, delayMinutes: 6 }),
        // On time, today: both flag the trip 4 min late (7 and 6.5 minutes for nothing); the early trip uses none
        // of its buffer (ML reserved none, the rules 3).
        row('alarm', { ...ml, delayMinutes: 11, shadowHeuristicDelay: 10.5 }),
        row('early', { ...ml, delayMinutes: -2, shadowHeuristicDelay: 3 }),
      ]);
      await d.db.insert(feedback).values([
        { bookingId: 'caught', actualDelayMinutes: 15 },
        { bookingId: 'missed', actualDelayMinutes: 12 },
        { bookingId: 'alarm', actualDelayMinutes: 4 },
        { bookingId: 'early', actualDelayMinutes: -5 },
      ]);

      expect((await reports.abReport({ days: 7 })).business).toEqual({
        late_threshold_minutes: 10,
        cost_per_delay_minute: 2,
        ml: {
          n: 3,
          late: 1,
          flagged: 2,
          anticipated: 1,
          false_alarms: 1,
          buffer_unused_minutes: 7,
          buffer_shortfall_minutes: 3,
          anticipated_ratio: 1,
          false_alarm_ratio: 0.5,
          buffer_unused_minutes_mean: 2.3333,
          buffer_shortfall_minutes_mean: 1,
          cost: 20,
        },
        heuristic: {
          n: 1,
          late: 1,
          flagged: 0,
          anticipated: 0,
          false_alarms: 0,
          buffer_unused_minutes: 0,
          buffer_shortfall_minutes: 6,
          anticipated_ratio: 0,
          false_alarm_ratio: null,
          buffer_unused_minutes_mean: 0,
          buffer_shortfall_minutes_mean: 6,
          cost: 12,
        },
        heuristic_shadow_on_ml: {
          n: 3,
          late: 1,
          flagged: 1,
          anticipated: 0,
          false_alarms: 1,
          buffer_unused_minutes: 9.5,
          buffer_shortfall_minutes: 9,
          anticipated_ratio: 0,
          false_alarm_ratio: 1,
          buffer_unused_minutes_mean: 3.1667,
          buffer_shortfall_minutes_mean: 3,
          cost: 37,
        },
        // 7 / 9.5 - 1, 3 / 9 - 1, 10 / 18.5 - 1.
        ml_against_rules: {
          buffer_unused_change: -0.2632,
          buffer_shortfall_change: -0.6667,
          buffer_minutes_change: -0.4595,
        },
      });

      // The last day holds no late trip: no anticipated share, not 0%; the rules served nothing in it.
      const day = (await reports.abReport({ days: 1 })).business;
      expect(day.ml).toMatchObject({ n: 2, late: 0, anticipated_ratio: null, false_alarm_ratio: 1 });
      expect(day.heuristic_shadow_on_ml).toMatchObject({ n: 2, late: 0, anticipated_ratio: null });
      expect(day.heuristic).toMatchObject({
        n: 0,
        anticipated_ratio: null,
        false_alarm_ratio: null,
        buffer_unused_minutes_mean: null,
        cost: 0,
      });
    },
  );
});

describe.skipIf(!hasPostgres)('the A/B report at volume (Postgres)', () => {
  it('covers every scored booking of the window it names, past 50,000, with the normal interval past the bootstrap', async () => {
    const d = await freshPostgres();
    open.push(d);
    const reports = createReports(d.db);
    open.push(reports);
    // 62,000 bookings over 29 days, each scored; half ML, ML about 1 minute closer than its shadow. None within
    // 10 minutes of the 7-day window's start: the report and the plain computation read `now` apart.
    await d.db.execute(sql`
      insert into predictions (booking_id, predicted_at, endpoint, source, variant, model_version, delay_minutes,
        interval_low, interval_high, shadow_heuristic_delay, features, weather_source, latency_ms)
      select 'v-' || i, now() - (60 + i * 40) * interval '1 second', 'single',
             case when i % 2 = 0 then 'ml' else 'heuristic' end, 'x', case when i % 2 = 0 then 'gbt-v2' end,
             10 + (i % 7) - 3, 0, 20, 10 + (i % 11) - 5, '[]', 'cache', 1
      from generate_series(0, 61999) as i
      where 60 + i * 40 not between 7 * 86400 - 600 and 7 * 86400 + 60`);
    await d.db.execute(
      sql`insert into feedback (booking_id, actual_delay_minutes) select booking_id, 10 from predictions`,
    );

    // 7 days: some 7,500 ML pairs, the bootstrap; 30 days: some 31,000, the normal interval.
    for (const days of [7, 30]) {
      const want = await expected(d, days * 24);
      const ab = await reports.abReport({ days });
      expect(ab.window_days).toBe(days);
      expectClose(ab.arms, want.arms);
      const n = want.diffs.length;
      expect(n > BOOTSTRAP_MAX_PAIRS, `${n} pairs`).toBe(days === 30);
      const mean = want.diffs.reduce((s, x) => s + x, 0) / n;
      const deviations = want.diffs.reduce((s, x) => s + (x - mean) ** 2, 0);
      const bootstrap = pairedComparison(want.diffs);
      expectClose(ab.paired, days === 30 ? pairedFromMoments(n, mean, deviations) : bootstrap);
      // Past the bound, the normal interval and the bootstrap agree to within the bootstrap's own noise.
      const [low, high] = ab.paired.ci95 as [number, number];
      const [bootLow, bootHigh] = bootstrap.ci95 as [number, number];
      expect(Math.abs(low - bootLow)).toBeLessThan(0.005);
      expect(Math.abs(high - bootHigh)).toBeLessThan(0.005);
      expect(ab.paired.verdict).toBe('ml_better');
    }
    const stored = 62_000 - 17;
    expect((await rows<{ n: number }>(d, sql`select count(*)::int as n from feedback`))[0]?.n).toBe(stored);
    const month = await reports.abReport({ days: 30 });
    expect(month.arms.ml.n + month.arms.heuristic.n).toBe(stored);
    expect((await reports.daily(30)).reduce((s, r) => s + r.with_feedback, 0)).toBe(stored);
  }, 60_000);
});

describe('the bootstrap worker', () => {
  it('answers what the bootstrap answers on this thread, refuses what is not a number, and goes on', async () => {
    const thread = bootstrapThread();
    open.push(thread);
    const diffs = Array.from({ length: 500 }, (_, i) => ((i * 7919) % 41) / 10 - 2.5);
    expect(await thread.run(diffs.join(','))).toEqual(pairedComparison(diffs));
    await expect(thread.run('1,x,3')).rejects.toThrow('paired difference 1 is not a number');
    expect(await thread.run('')).toEqual(pairedComparison([]));
    await thread.close();
    expect(await thread.run('1,2,3')).toEqual(pairedComparison([1, 2, 3]));
  });
});

describe.skipIf(!hasPostgres)('report parameters over HTTP', () => {
  it('refuses an empty number with a 400 that names it, never reads it as 0', async () => {
    const postgres = await freshPostgres();
    open.push(postgres);
    const service = await testService({ flags: { mlWeight: 0 }, env: { DATABASE_URL: postgres.url } });
    open.push(service);
    for (const path of [
      '/v1/monitoring/anomalies?threshold_mae=',
      '/v1/monitoring/anomalies?threshold_mae=%20',
      '/v1/monitoring/daily?days=',
      '/v1/ab-report?days=',
      '/v1/monitoring/predictions?limit=',
    ]) {
      const res = await service.app.request(path);
      expect(res.status, path).toBe(400);
      const name = (path.split('?')[1] as string).split('=')[0] as string;
      expect((await res.json()).errors, path).toEqual([
        {
          pointer: `/${name}`,
          detail: `${name} is empty: give a number, or leave the parameter out for its default`,
        },
      ]);
    }
    const res = await service.app.request('/v1/monitoring/anomalies?threshold_mae=x');
    expect((await res.json()).errors[0].detail).toBe('threshold_mae must be a number');
    expect((await service.app.request('/v1/monitoring/anomalies')).status).toBe(200);
  });
});
