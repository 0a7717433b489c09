import { sql } from 'drizzle-orm';
import { drizzle } from 'drizzle-orm/postgres-js';
import { migrate } from 'drizzle-orm/postgres-js/migrator';
import postgres from 'postgres';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { feedback, flagChanges, predictions } from '../db/schema.js';
import { bookingRefs } from '../service/privacy/booking-ref.js';
import { type Database, openDatabase } from '../service/storage/database.js';
import {
  freshPglite,
  freshPostgres,
  postgresAvailable,
  predictionRow,
} from '../service/test-support/databases.js';
import {
  type PrivatePostgres,
  privatePostgresAvailable,
  startPrivatePostgres,
} from '../service/test-support/private-postgres.js';
import { interpolateSql, postgresQueries } from './dashboard-queries.js';

/*
 * Grafana's Postgres datasource reads as delay_grafana, the role migration 0004 creates (docs/privacy.md): every
 * dashboard query answers through it, on Postgres and on PGlite; it reads the tables the dashboards read, never a
 * booking id in clear, and writes nothing. The role belongs to the cluster: a private one shows it created once by
 * databases migrating at once, and a migration by an owner that may not create roles.
 */

const hasPostgres = await postgresAvailable();
const hasPrivatePostgres = privatePostgresAvailable();
const ROLE = 'delay_grafana';
const bookingRef = bookingRefs('datasource-role-test-booking-ref-key');

/** A statement's rows, or the SQLSTATE it failed with. */
type Run = (text: string) => Promise<{ rows: Record<string, unknown>[] } | { code: string }>;
const failure = (err: unknown) => {
  const e = err as { code?: string; cause?: { code?: string } };
  const code = e.cause?.code ?? e.code;
  if (!code) throw err;
  return { code };
};

/** Predictions of the last hour (one scored and off by 8 minutes), a rollback in the audit. */
async function seed(d: Database) {
  const at = new Date(Date.now() - 600_000);
  await d.db.insert(predictions).values([
    predictionRow('role-a', {
      predictedAt: at,
      bookingRef: bookingRef('role-a'),
      traceId: 'ab'.repeat(16),
    }),
    predictionRow('role-b', { predictedAt: at, bookingRef: bookingRef('role-b') }),
  ]);
  await d.db.insert(feedback).values({ bookingId: 'role-a', actualDelayMinutes: 13 });
  await d.db.insert(flagChanges).values({
    at,
    actor: 'alertmanager',
    action: 'rollback',
    flag: 'delay-model',
    previousWeight: 20,
    newWeight: 0,
    labels: { signal: 'errors' },
  });
}

/** The tables a dashboard query names after from or join. */
const tablesOf = (query: string) => [...query.matchAll(/\b(?:from|join)\s+([a-z_]+)/gi)].map((m) => m[1]);
const dashboardTables = [...new Set(postgresQueries().flatMap((q) => tablesOf(q.rawSql)))].sort();

const engines = [
  [
    'PGlite',
    true,
    async () => {
      const d = await freshPglite();
      const run: Run = async (text) => {
        try {
          const result = (await d.db.execute(sql.raw(text))) as unknown as {
            rows: Record<string, unknown>[];
          };
          return { rows: result.rows };
        } catch (err) {
          return failure(err);
        }
      };
      // PGlite serves one session: a role set holds for every statement after it.
      return { d, run, close: () => d.close() };
    },
  ],
  [
    'Postgres',
    hasPostgres,
    async () => {
      const d = await freshPostgres();
      // One connection: SET ROLE holds for its session only.
      const client = postgres(d.url, { max: 1, onnotice: () => {} });
      const run: Run = async (text) => {
        try {
          return { rows: [...(await client.unsafe(text))] };
        } catch (err) {
          return failure(err);
        }
      };
      return {
        d,
        run,
        close: async () => {
          await client.end({ timeout: 1 });
          await d.close();
        },
      };
    },
  ],
] as const;

describe.each(engines)('the Grafana role on %s', (_name, available, open) => {
  let engine: Awaited<ReturnType<typeof open>>;
  let run: Run;
  beforeAll(async () => {
    if (!available) return;
    engine = await open();
    await seed(engine.d);
    run = engine.run;
    await run(`set role ${ROLE}`);
    expect(await run('select current_user as role')).toEqual({ rows: [{ role: ROLE }] });
  });
  afterAll(() => engine?.close());

  it.skipIf(!available)('answers every query of every dashboard, bookings by their pseudonym', async () => {
    const range = { from: new Date(Date.now() - 6 * 3_600_000), to: new Date() };
    const answers = [];
    for (const { file, name, rawSql } of postgresQueries())
      answers.push({ query: `${file}: ${name}`, answer: await run(interpolateSql(rawSql, range)) });
    expect(answers.filter(({ answer }) => !('rows' in answer) || answer.rows.length === 0)).toEqual([]);
    const latest = answers.find((a) => a.query === 'predictions.json: Latest predictions')?.answer as {
      rows: Record<string, unknown>[];
    };
    expect(latest.rows.map((r) => [r.booking_ref, r.actual_delay_minutes]).sort()).toEqual(
      [
        [bookingRef('role-a'), 13],
        [bookingRef('role-b'), null],
      ].sort(),
    );
    expect(JSON.stringify(answers)).not.toMatch(/role-[ab]/);
  });

  it.skipIf(!available)(
    'reads the tables the dashboards read, no booking id in clear, and writes nothing',
    async () => {
      // The catalog, not information_schema: that lists only what the role may use.
      const names = async (query: string) =>
        ((await run(query)) as { rows: { name: string }[] }).rows.map((t) => t.name);
      const tablesWhere = (condition: string) =>
        names(`select relname as name from pg_class
               where relnamespace = current_schema()::regnamespace and relkind = 'r' and ${condition} order by 1`);
      const tables = await tablesWhere('true');
      expect(tables).toEqual(
        expect.arrayContaining(['predictions', 'feedback', 'erasures', 'model_versions']),
      );
      expect(await tablesWhere(`has_any_column_privilege(oid, 'SELECT')`)).toEqual(dashboardTables);

      const denied = (text: string) => run(text).then((a) => ('code' in a ? a.code : `answered: ${text}`));
      const attempts: string[] = [];
      for (const table of tables) {
        const [first] = await names(
          `select attname as name from pg_attribute
           where attrelid = '${table}'::regclass and attnum > 0 and not attisdropped order by attnum`,
        );
        attempts.push(
          `insert into ${table} default values`,
          `update ${table} set ${first} = ${first}`,
          `delete from ${table}`,
          `truncate ${table}`,
        );
      }
      attempts.push(
        'select booking_id from predictions',
        'select * from predictions',
        'select booking_id from scored_predictions',
        'select * from feedback',
        'select * from erasures',
        'select * from model_versions',
        'select * from prediction_hours',
        "select nextval('predictions_id_seq')",
        'create table grafana_notes (note text)',
      );
      const answers = await Promise.all(attempts.map(async (a) => [a, await denied(a)]));
      // 42501: insufficient_privilege.
      expect(answers.filter(([, code]) => code !== '42501')).toEqual([]);
    },
  );
});

describe.skipIf(!hasPrivatePostgres)('the Grafana role in a cluster of its own', () => {
  let cluster: PrivatePostgres;
  let admin: postgres.Sql;
  const urlOf = (database: string, user = 'postgres') => {
    const url = new URL(cluster.url);
    url.pathname = `/${database}`;
    url.username = user;
    return url.toString();
  };
  beforeAll(async () => {
    cluster = await startPrivatePostgres();
    admin = postgres(cluster.url, { max: 1, onnotice: () => {} });
  });
  afterAll(async () => {
    await admin?.end({ timeout: 1 });
    await cluster?.destroy();
  });
  const dropped: string[] = [];
  afterEach(async () => {
    for (const name of dropped.splice(0)) await admin.unsafe(`drop database if exists ${name} with (force)`);
    await admin.unsafe(`drop role if exists ${ROLE}`);
  });
  const roles = async () => (await admin`select rolcanlogin from pg_roles where rolname = ${ROLE}`).length;

  it('is created once by databases migrating at once, and each of them grants it its reads', async () => {
    expect(await roles()).toBe(0);
    const names = Array.from({ length: 6 }, (_, i) => `parallel_${i}`);
    for (const name of names) {
      await admin.unsafe(`create database ${name}`);
      dropped.push(name);
    }
    const opened = await Promise.all(
      names.map((name) => openDatabase({ url: urlOf(name), dataDir: 'unused' })),
    );
    await Promise.all(opened.map((d) => d.close()));
    expect(await admin`select rolcanlogin from pg_roles where rolname = ${ROLE}`).toEqual([
      { rolcanlogin: false },
    ]);
    for (const name of names) {
      const db = postgres(urlOf(name), { max: 1, onnotice: () => {} });
      try {
        const [grants] =
          await db`select has_column_privilege(${ROLE}, 'predictions', 'booking_ref', 'SELECT') as ref,
          has_column_privilege(${ROLE}, 'predictions', 'booking_id', 'SELECT') as id`;
        expect(grants, name).toEqual({ ref: true, id: false });
      } finally {
        await db.end({ timeout: 1 });
      }
    }
  });

  it('leaves an owner that may not create roles migrating, with a warning; the owner grants once the role exists', async () => {
    await admin.unsafe('create role app_owner login');
    await admin.unsafe('create database owned owner app_owner');
    dropped.push('owned');
    const warnings: string[] = [];
    const owner = postgres(urlOf('owned', 'app_owner'), {
      max: 1,
      onnotice: (n) => warnings.push(`${n.severity}: ${n.message}`),
    });
    try {
      await migrate(drizzle(owner), { migrationsFolder: 'db/migrations' });
      expect(await roles()).toBe(0);
      expect(warnings.filter((w) => w.includes(`role ${ROLE} not created`))).toEqual([
        expect.stringMatching(
          /^WARNING: .*permission denied to create role.*SELECT grafana_read_grants\(\)$/,
        ),
      ]);
      await owner`insert into predictions (booking_id, booking_ref, predicted_at, endpoint, source, variant,
        delay_minutes, interval_low, interval_high, shadow_heuristic_delay, features, weather_source, latency_ms)
        values ('owned-1', ${bookingRef('owned-1')}, now(), 'single', 'heuristic', 'heuristic', 5, 3, 8, 5, '[]', 'default', 1)`;

      await admin.unsafe(`create role ${ROLE} nologin`);
      await owner`select grafana_read_grants()`;
      const reader = postgres(urlOf('owned'), { max: 1, onnotice: () => {} });
      try {
        await reader.unsafe(`set role ${ROLE}`);
        expect([...(await reader`select booking_ref from predictions`)]).toEqual([
          { booking_ref: bookingRef('owned-1') },
        ]);
        await expect(reader`select booking_id from predictions`).rejects.toMatchObject({ code: '42501' });
        await expect(reader`delete from predictions`).rejects.toMatchObject({ code: '42501' });
      } finally {
        await reader.end({ timeout: 1 });
      }
    } finally {
      await owner.end({ timeout: 1 });
      await admin.unsafe('drop database if exists owned with (force)');
      await admin.unsafe('drop role if exists app_owner');
    }
  });
});
