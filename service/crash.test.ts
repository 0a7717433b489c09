import { sql } from 'drizzle-orm';
import { afterEach, describe, expect, it } from 'vitest';
import { predictions } from '../db/schema.js';
import { freshPostgres, postgresAvailable } from './test-support/databases.js';
import { booking } from './test-support/harness.js';
import { type ServiceProcess, startService, waitForReady } from './test-support/process.js';

/*
 * What a crash loses (docs/metrics.md#what-a-crash-loses): the service process on Postgres answers a steady
 * stream of predictions and is killed with SIGKILL, as the OOM killer does. Only what it answered in its last
 * moments may be missing; everything answered earlier is in the database.
 */
const hasPostgres = await postgresAvailable();
const running: { service: ServiceProcess; close: () => Promise<void> }[] = [];
afterEach(async () => {
  for (const r of running.splice(0)) {
    await r.service.stop('SIGKILL');
    await r.close();
  }
});

/** Longer than a flush interval (20 ms) plus one batch write, with room for a loaded machine. */
const SETTLED_MS = 1000;

describe.skipIf(!hasPostgres)('a crash (SIGKILL) of the service on Postgres', () => {
  it('loses only the predictions answered in its last moments', async () => {
    const database = await freshPostgres();
    const service = await startService({ DATABASE_URL: database.url });
    running.push({ service, close: () => database.close() });
    await waitForReady(service);

    const answeredAt = new Map<string, number>();
    let stop = false;
    let next = 0;
    const client = async () => {
      while (!stop) {
        const id = `crash-${next++}`;
        try {
          const res = await fetch(`http://127.0.0.1:${service.port}/v1/predictions`, {
            method: 'POST',
            headers: { 'content-type': 'application/json' },
            body: JSON.stringify(booking({ booking_id: id })),
          });
          if (res.status === 200) {
            await res.arrayBuffer();
            answeredAt.set(id, performance.now());
          }
        } catch {
          return; // the process is gone
        }
      }
    };
    const clients = Array.from({ length: 8 }, client);
    await new Promise((r) => setTimeout(r, 3000));
    service.child.kill('SIGKILL');
    const killedAt = performance.now();
    stop = true;
    await Promise.all(clients);
    await service.exited;

    const rows = await database.db.select({ id: predictions.bookingId }).from(predictions);
    const stored = new Set(rows.map((r) => r.id));
    const lost = [...answeredAt].filter(([id]) => !stored.has(id));
    const lostEarly = lost.filter(([, at]) => killedAt - at > SETTLED_MS);
    const [{ n } = { n: 0 }] = await database.db.select({ n: sql<number>`count(*)::int` }).from(predictions);
    console.log(
      `SIGKILL after 3 s: ${answeredAt.size} predictions answered, ${Number(n)} stored, ${lost.length} lost` +
        (lost.length
          ? `, answered ${Math.round(killedAt - Math.max(...lost.map(([, at]) => at)))}-${Math.round(killedAt - Math.min(...lost.map(([, at]) => at)))} ms before the kill`
          : ''),
    );
    expect(answeredAt.size).toBeGreaterThan(100);
    expect(lostEarly.map(([id]) => id)).toEqual([]);
  }, 60_000);
});
