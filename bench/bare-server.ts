import { readFileSync } from 'node:fs';
import { serve } from '@hono/node-server';
import { Hono } from 'hono';
import { loadOnnxModel } from '../service/models/onnx-model.js';

/**
 * The baselines: Hono on the same server adapter, parsing the same JSON body and answering a small JSON.
 * `bare-server.ts PORT onnx` also scores one row with gbt-v2 per request, through the service's model code and
 * nothing else: the most the full path could answer with this model on this machine.
 */
const [port, mode] = process.argv.slice(2);
const app = new Hono();
if (mode === 'onnx') {
  const model = await loadOnnxModel('models', 'gbt-v2');
  const { features } = JSON.parse(readFileSync('models/gbt-v2.parity.json', 'utf8')) as {
    features: number[][];
  };
  let n = 0;
  app.post('/v1/predictions', async (c) => {
    const body = await c.req.json<{ booking_id: string }>();
    n = (n + 1) % features.length;
    const [scored] = await model.predict([features[n] as number[]]);
    return c.json({ booking_id: body.booking_id, delay_minutes: scored?.delay_minutes });
  });
} else {
  app.post('/v1/predictions', async (c) => {
    const body = await c.req.json<{ booking_id: string }>();
    return c.json({ booking_id: body.booking_id, delay_minutes: 0 });
  });
}
serve({ fetch: app.fetch, port: Number(port), hostname: '127.0.0.1' });
