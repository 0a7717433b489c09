import { serve } from '@hono/node-server';
import { Hono } from 'hono';

/** The baseline: Hono on the same server adapter, parsing the same JSON body and answering a small JSON. */
const app = new Hono();
app.post('/v1/predictions', async (c) => {
  const body = await c.req.json<{ booking_id: string }>();
  return c.json({ booking_id: body.booking_id, delay_minutes: 0 });
});
serve({ fetch: app.fetch, port: Number(process.argv[2]), hostname: '127.0.0.1' });
