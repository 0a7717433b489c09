import { sql } from 'drizzle-orm';
import { afterEach, describe, expect, it } from 'vitest';
import { predictions } from '../db/schema.js';
import { freshPostgres, postgresAvailable } from './test-support/databases.js';
import { booking, eventually } from './test-support/harness.js';
import { type ServiceProcess, scrapeMetrics, startService, waitForReady } from './test-support/process.js';

/*
 * Input the database would refuse, sent to the service process on Postgres (issue 17): refused at the API
 * with a 400 naming the field, never a 5xx, and it stops nothing: every answered prediction is stored.
 */
const hasPostgres = await postgresAvailable();
const running: { service: ServiceProcess; close: () => Promise<void> }[] = [];
afterEach(async () => {
  for (const r of running.splice(0)) {
    await r.service.stop('SIGTERM');
    await r.close();
  }
});

describe.skipIf(!hasPostgres)('ids the database would refuse, against the service on Postgres', () => {
  it('answers 400 for a NUL or an unpaired surrogate in an id, and keeps storing every other prediction', async () => {
    const database = await freshPostgres();
    const service = await startService({ DATABASE_URL: database.url });
    running.push({ service, close: () => database.close() });
    await waitForReady(service);
    const post = (path: string, body: unknown) =>
      fetch(`http://127.0.0.1:${service.port}${path}`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(body),
      });

    for (const id of ['nul-\u0000-id', 'lone-\ud800-surrogate', 'lone-\udc00']) {
      const refused = await post('/v1/predictions', booking({ booking_id: id }));
      expect(refused.status).toBe(400);
      expect(JSON.stringify(await refused.json())).toContain('/booking_id');
      expect(
        (await post('/v1/predictions/batch', { bookings: [booking(), booking({ booking_id: id })] })).status,
      ).toBe(400);
      expect((await post('/v1/feedback', { booking_id: id, actual_delay_minutes: 3 })).status).toBe(400);
      expect(
        (await post('/v1/feedback/batch', { feedback: [{ booking_id: id, actual_delay_minutes: 3 }] }))
          .status,
      ).toBe(400);
    }

    const kept = Array.from({ length: 50 }, (_, i) => booking({ booking_id: `kept-${i}-é\t🚑` }));
    expect((await post('/v1/predictions/batch', { bookings: kept })).status).toBe(200);
    const stored = async () =>
      Number((await database.db.select({ n: sql<number>`count(*)::int` }).from(predictions))[0]?.n);
    await eventually(stored, (n) => n === 50);
    const metric = await scrapeMetrics(service.metricsPort);
    expect(metric('delay_prediction_log_written_total')).toBe(50);
    expect(metric('delay_prediction_log_dropped_total')).toBe(0);
    expect(metric('delay_http_rejected_requests_total', { reason: 'validation' })).toBe(12);
    const fb = await post('/v1/feedback', { booking_id: 'kept-3-é\t🚑', actual_delay_minutes: 4 });
    expect(await fb.json()).toMatchObject({ outcome: 'recorded' });
  }, 60_000);
});

/*
 * What a crash loses (docs/metrics.md#what-a-crash-loses): the service process on Postgres answers a steady
 * stream of predictions and is killed with SIGKILL, as the OOM killer does. Only what it answered in its last
 * moments may be missing; everything answered earlier is in the database.
 */
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
