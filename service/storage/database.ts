import { mkdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { PGlite } from '@electric-sql/pglite';
import { getTableColumns, sql } from 'drizzle-orm';
import type { PgDatabase, PgQueryResultHKT } from 'drizzle-orm/pg-core';
import { drizzle as drizzlePglite } from 'drizzle-orm/pglite';
import { migrate as migratePglite } from 'drizzle-orm/pglite/migrator';
import { drizzle as drizzlePostgres } from 'drizzle-orm/postgres-js';
import { migrate as migratePostgres } from 'drizzle-orm/postgres-js/migrator';
import postgres from 'postgres';
import lockfile from 'proper-lockfile';
import * as schema from '../../db/schema.js';

export type Db = PgDatabase<PgQueryResultHKT, typeof schema>;

type PredictionRow = typeof schema.predictions.$inferInsert;

export interface Database {
  db: Db;
  kind: 'postgres' | 'pglite';
  /**
   * One multi-row insert of prediction rows: the prediction log's write. On Postgres it ends within its
   * statement timeout (SQLSTATE 57014 past it), and `signal` cancels it on the server: either way the rows are
   * all written or none.
   */
  insertPredictions(rows: PredictionRow[], signal?: AbortSignal): Promise<void>;
  close(): Promise<void>;
}

/**
 * What one write of the prediction log may take on Postgres, lock waits included: a batch of 2,000 rows takes
 * tens of milliseconds; a table locked by another session would otherwise hold the write, and every row queued
 * behind it, with no error to count.
 */
export const PREDICTION_WRITE_TIMEOUT_MS = 5000;

/**
 * Postgres: one prepared `insert ... select from unnest(...)` with one array parameter per column. Against a
 * multi-row `values` list (15 parameters per row) it takes a third of the service's CPU per row and writes
 * 1.2 to 1.3 times the rows per second (docs/performance.md): the log shares the service's event loop and
 * decides whether the batch endpoint's rows are kept. COPY would be faster still, but postgres-js never settles
 * a COPY that the server fails (porsager/postgres#1173): the log would hang on the first Postgres restart.
 * Columns follow the drizzle schema.
 */
function unnestPredictionInsert(client: postgres.Sql) {
  const columns = Object.entries(getTableColumns(schema.predictions)).filter(([key]) => key !== 'id');
  const names = columns.map(([, c]) => c.name).join(', ');
  const arrays = columns.map(([, c], i) => `$${i + 1}::${c.getSQLType()}[]`).join(', ');
  const text = `insert into predictions (${names}) select * from unnest(${arrays})`;
  return async (rows: PredictionRow[], signal?: AbortSignal) => {
    signal?.throwIfAborted();
    const parameters = columns.map(([key]) =>
      client.array(
        rows.map((row) => {
          const value = row[key as keyof PredictionRow];
          // Every element travels as text and is cast by the statement: dates as ISO strings, the feature
          // vector as one JSON text (left an array, it would be read as a second array dimension).
          return key === 'features'
            ? JSON.stringify(value)
            : value instanceof Date
              ? value.toISOString()
              : (value ?? null);
        }) as postgres.SerializableParameter[],
      ),
    );
    const query = client.unsafe(text, parameters, { prepare: true });
    const cancel = () => void query.cancel();
    signal?.addEventListener('abort', cancel, { once: true });
    try {
      await query;
    } finally {
      signal?.removeEventListener('abort', cancel);
    }
  };
}

const migrationsFolder = fileURLToPath(new URL('../../db/migrations', import.meta.url));

/** A second process on a PGlite folder: PGlite runs inside one process, two would split or corrupt its data. */
export class DataDirInUseError extends Error {
  constructor(readonly dataDir: string) {
    super(
      `DATA_DIR ${dataDir} is in use by another process: PGlite serves one process only; run several replicas (or a CLI beside the service) on Postgres with DATABASE_URL`,
    );
    this.name = 'DataDirInUseError';
  }
}

/**
 * Holds `<dataDir>.lock` while the folder is open. The lock is refreshed every 2 s; one left by a killed process
 * is taken over after 10 s. Losing it while open (another process took it over) makes the lock library throw,
 * which ends this process rather than let two write.
 */
async function lockDataDir(dataDir: string) {
  try {
    return await lockfile.lock(dataDir, { stale: 10_000, update: 2_000 });
  } catch (err) {
    if ((err as { code?: string }).code === 'ELOCKED') throw new DataDirInUseError(dataDir);
    throw err;
  }
}

/**
 * Postgres through postgres-js when a URL is given, else PGlite in `dataDir`: the same schema and the same
 * drizzle-kit migrations, applied before anything else touches the database.
 */
export async function openDatabase({
  url,
  dataDir,
  predictionWriteTimeoutMs = PREDICTION_WRITE_TIMEOUT_MS,
}: {
  url?: string;
  dataDir: string;
  /** Postgres: the prediction log's statement timeout. */
  predictionWriteTimeoutMs?: number;
}): Promise<Database> {
  if (url) {
    // Short timeouts: the prediction log retries on its own, and a hung connection must not pile up work.
    const options = { connect_timeout: 3, idle_timeout: 30, onnotice: () => {} };
    const client = postgres(url, { ...options, max: 4 });
    const db = drizzlePostgres(client, { schema });
    await migratePostgres(db, { migrationsFolder });
    // The log writes one batch at a time on a connection of its own, whose statements time out: a pool-wide
    // timeout would also stop migrations and reports, which may rightly take longer.
    const logClient = postgres(url, {
      ...options,
      max: 1,
      connection: { statement_timeout: predictionWriteTimeoutMs, application_name: 'delay-prediction-log' },
    });
    // A client serializes arrays by the types it fetches on its first connection: before that, its first
    // insert would send the text arrays malformed (22P02) and the rows would be set aside as refused.
    await logClient`select 1`;
    return {
      db: db as unknown as Db,
      kind: 'postgres',
      insertPredictions: unnestPredictionInsert(logClient),
      close: async () => {
        await Promise.all([client.end({ timeout: 2 }), logClient.end({ timeout: 2 })]);
      },
    };
  }
  mkdirSync(dataDir, { recursive: true });
  const release = await lockDataDir(dataDir);
  const client = new PGlite(dataDir);
  const db = drizzlePglite({ client, schema });
  try {
    await migratePglite(db, { migrationsFolder });
  } catch (err) {
    await client.close();
    await release();
    throw err;
  }
  return {
    db: db as unknown as Db,
    kind: 'pglite',
    insertPredictions: async (rows) => {
      await db.insert(schema.predictions).values(rows);
    },
    async close() {
      await client.close();
      await release();
    },
  };
}

export async function ping(db: Db): Promise<void> {
  await db.execute(sql`select 1`);
}
