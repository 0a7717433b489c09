import { randomUUID } from 'node:crypto';
import postgres from 'postgres';
import { type Database, openDatabase } from '../storage/database.js';
import type { PredictionRow } from '../storage/prediction-log.js';
import { presentOrSkip } from './availability.js';
import { tempDir } from './harness.js';

export const POSTGRES_ADMIN_URL = 'postgres://postgres@127.0.0.1:5432/test';

/** Whether the machine's Postgres answers; under CI=true its absence is a failure, not a skip. */
export async function postgresAvailable(): Promise<boolean> {
  const sql = postgres(POSTGRES_ADMIN_URL, { connect_timeout: 2, max: 1, onnotice: () => {} });
  try {
    await sql`select 1`;
    return true;
  } catch (err) {
    return presentOrSkip(`Postgres: ${POSTGRES_ADMIN_URL} does not answer (${(err as Error).message})`);
  } finally {
    await sql.end({ timeout: 1 });
  }
}

/** A database of its own on the real Postgres, dropped on close; `via` rewrites the URL (e.g. a proxy port). */
export async function freshPostgres(via?: (url: URL) => URL): Promise<Database & { url: string }> {
  const name = `delay_test_${randomUUID().replaceAll('-', '')}`;
  const admin = postgres(POSTGRES_ADMIN_URL, { max: 1, onnotice: () => {} });
  await admin.unsafe(`create database ${name}`);
  const url = new URL(POSTGRES_ADMIN_URL);
  url.pathname = `/${name}`;
  const target = via ? via(url) : url;
  const database = await openDatabase({ url: target.toString(), dataDir: 'unused' });
  return {
    ...database,
    url: target.toString(),
    async close() {
      await database.close();
      await admin.unsafe(`drop database if exists ${name} with (force)`);
      await admin.end({ timeout: 1 });
    },
  };
}

export async function freshPglite(): Promise<Database> {
  return openDatabase({ dataDir: tempDir('delay-pglite-') });
}

/** The two stores the service runs on, for `describe.each`: a name, a fresh migrated database, whether it can run here. */
export const databaseEngines = (postgres: boolean) =>
  [
    ['PGlite', freshPglite, true],
    ['Postgres', () => freshPostgres(), postgres],
  ] as const;

/** A stored prediction as the prediction log writes it: the heuristic's 5 minutes, fields overridable. */
export function predictionRow(bookingId: string, overrides: Partial<PredictionRow> = {}): PredictionRow {
  return {
    bookingId,
    predictedAt: new Date(),
    endpoint: 'single',
    source: 'heuristic',
    variant: 'heuristic',
    modelVersion: null,
    fallbackReason: null,
    delayMinutes: 5,
    intervalLow: 3,
    intervalHigh: 8,
    shadowHeuristicDelay: 5,
    shadowModelVersion: null,
    shadowModelDelay: null,
    features: [8.5, 3, 0, 11, 4.2, 10, 1, 0, 12, 0, 0, 3, 10, 0],
    weatherSource: 'default',
    latencyMs: 1.2,
    traceId: null,
    bookingRef: null,
    ...overrides,
  };
}
