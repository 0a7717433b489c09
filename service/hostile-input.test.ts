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
