import { type SQL, sql } from 'drizzle-orm';
import { afterEach, describe, expect, it } from 'vitest';
import { erasures, feedback, predictions } from '../../db/schema.js';
import { bookingRefs } from '../privacy/booking-ref.js';
import type { Database } from '../storage/database.js';
import { databaseEngines, postgresAvailable, predictionRow as row } from '../test-support/databases.js';
import { eraseBooking } from './erasure.js';
import { createReports } from './reports.js';

const hasPostgres = await postgresAvailable();
const open: Database[] = [];
afterEach(async () => {
  await Promise.all(open.splice(0).map((d) => d.close()));
});

const bookingRef = bookingRefs('erasure-test-booking-ref-key');
const VICTIM = 'erase-me-4f1c9a';

async function rows<T>(d: Database, query: SQL): Promise<T[]> {
  const result = (await d.db.execute(query)) as unknown as T[] | { rows: T[] };
  return Array.isArray(result) ? result : result.rows;
}

/** Every table of the database (the migrations' own included) whose row, as text, holds `needle`: none expected. */
async function tablesHolding(d: Database, needle: string) {
  const tables = await rows<{ schema: string; name: string }>(
    d,
    sql`select table_schema as schema, table_name as name from information_schema.tables
        where table_type = 'BASE TABLE' and table_schema not in ('pg_catalog', 'information_schema')`,
  );
  expect(tables.map((t) => t.name)).toEqual(expect.arrayContaining(['predictions', 'erasures']));
  const holding: string[] = [];
  for (const { schema, name } of tables) {
    const [found] = await rows<{ n: number }>(
      d,
      sql`select count(*)::int as n from ${sql.identifier(schema)}.${sql.identifier(name)} as r
          where strpos(r::text, ${needle}) > 0`,
    );
    if (Number(found?.n) > 0) holding.push(`${schema}.${name}`);
  }
  return holding;
}

/** What the reports read: the hourly rollups, exactly (numeric sums as text). */
const rollups = async (d: Database) => ({
  predictionHours: await rows(d, sql`select * from prediction_hours order by hour, source`),
  scoredHours: await rows(d, sql`select * from scored_hours order by hour, source, model_version`),
  scored: await rows(d, sql`select * from scored_predictions order by booking_id`),
});

const engines = databaseEngines(hasPostgres);

describe.each(engines)('erasing a booking on %s', (_name, fresh, available) => {
  async function database() {
    const d = await fresh();
    open.push(d);
    return d;
  }
  const hoursAgo = (h: number) => new Date(Date.now() - h * 3_600_000);

  it.skipIf(!available)(
    'deletes its predictions, feedback and scored row; the rollups read as if it had never been served; the audit holds its pseudonym only',
    async () => {
      const d = await database();
      // Other bookings, in the hours the booking shares and others; ML-served with feedback, so scored_hours holds
      // their pairs.
      const ml = { source: 'ml', variant: 'gbt-v2', modelVersion: 'gbt-v2' };
      await d.db.insert(predictions).values([
        row('other-1', {
          ...ml,
          predictedAt: hoursAgo(2),
          delayMinutes: 6,
          bookingRef: bookingRef('other-1'),
        }),
        row('other-2', { predictedAt: hoursAgo(2), delayMinutes: 4 }),
        row('other-3', { ...ml, predictedAt: hoursAgo(30), delayMinutes: 9 }),
      ]);
      await d.db.insert(feedback).values([
        { bookingId: 'other-1', actualDelayMinutes: 7 },
        { bookingId: 'other-3', actualDelayMinutes: 3 },
      ]);
      const without = await rollups(d);
      const reportWithout = await createReports(d.db).daily(3);

      // The booking: served in an hour of its own, posted again in a shared one, its feedback scored.
      await d.db.insert(predictions).values([
        row(VICTIM, { ...ml, predictedAt: hoursAgo(5), delayMinutes: 12, bookingRef: bookingRef(VICTIM) }),
        row(VICTIM, {
          predictedAt: hoursAgo(2),
          delayMinutes: 30,
          fallbackReason: 'model_timeout',
          bookingRef: bookingRef(VICTIM),
        }),
      ]);
      await d.db.insert(feedback).values({ bookingId: VICTIM, actualDelayMinutes: 2 });
      expect((await rollups(d)).scored).toHaveLength(3);
      expect(await tablesHolding(d, VICTIM)).toEqual(
        expect.arrayContaining(['public.predictions', 'public.feedback', 'public.scored_predictions']),
      );

      const erased = await eraseBooking(d.db, { bookingId: VICTIM, bookingRef, actor: 'cli:dpo' });
      expect(erased).toEqual({
        id: expect.any(Number),
        bookingRef: bookingRef(VICTIM),
        predictions: 2,
        feedback: 1,
        scored: 1,
      });
      expect(await tablesHolding(d, VICTIM)).toEqual([]);
      expect(await rollups(d)).toEqual(without);
      expect(await createReports(d.db).daily(3)).toEqual(reportWithout);
      // Its pseudonym is left in the audit alone.
      expect(await tablesHolding(d, bookingRef(VICTIM))).toEqual(['public.erasures']);
      const [audit] = await d.db.select().from(erasures);
      expect(audit).toEqual({
        id: erased.id,
        at: expect.any(Date),
        actor: 'cli:dpo',
        bookingRef: bookingRef(VICTIM),
        predictions: 2,
        feedback: 1,
        scored: 1,
      });
      // Other bookings keep every row.
      expect(await d.db.select({ n: sql<number>`count(*)::int` }).from(predictions)).toEqual([{ n: 3 }]);
    },
  );

  it.skipIf(!available)(
    'records a request for a booking with nothing stored, with zeros, as often as it comes',
    async () => {
      const d = await database();
      await d.db.insert(predictions).values(row('kept'));
      for (let i = 0; i < 2; i++)
        expect(
          await eraseBooking(d.db, { bookingId: 'never-seen', bookingRef, actor: 'cli:dpo' }),
        ).toMatchObject({ bookingRef: bookingRef('never-seen'), predictions: 0, feedback: 0, scored: 0 });
      const audit = await d.db.select().from(erasures).orderBy(erasures.id);
      expect(audit.map((a) => [a.bookingRef, a.predictions, a.feedback, a.scored])).toEqual([
        [bookingRef('never-seen'), 0, 0, 0],
        [bookingRef('never-seen'), 0, 0, 0],
      ]);
      expect(await tablesHolding(d, 'never-seen')).toEqual([]);
    },
  );

  it.skipIf(!available)(
    'deletes nothing when the audit cannot be written, and never stores a booking id in clear as its ref',
    async () => {
      const d = await database();
      await d.db.insert(predictions).values(row(VICTIM));
      await d.db.insert(feedback).values({ bookingId: VICTIM, actualDelayMinutes: 2 });
      const before = await rollups(d);
      // A ref that is the id itself: the audit's check refuses it, and the whole erasure rolls back.
      await expect(
        eraseBooking(d.db, { bookingId: VICTIM, bookingRef: (id) => id, actor: 'cli:dpo' }),
      ).rejects.toThrow();
      expect(await d.db.select({ n: sql<number>`count(*)::int` }).from(predictions)).toEqual([{ n: 1 }]);
      expect(await d.db.select({ n: sql<number>`count(*)::int` }).from(feedback)).toEqual([{ n: 1 }]);
      expect(await rollups(d)).toEqual(before);
      expect(await d.db.select().from(erasures)).toEqual([]);
    },
  );
});
