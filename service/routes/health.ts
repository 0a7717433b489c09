import { createRoute, z } from '@hono/zod-openapi';
import type { FlagService } from '../flags/flag-service.js';
import { PUBLIC, type Reject, routeApp } from '../http/openapi.js';
import type { ModelRegistry } from '../models/model-registry.js';

const ReadySchema = z.object({
  status: z.enum(['ready', 'not_ready']),
  parts: z.object({ flags: z.enum(['ready', 'not_ready']), models: z.enum(['ready', 'not_ready']) }),
});

const FlagStatusSchema = z.object({
  source: z.discriminatedUnion('kind', [
    z.object({ kind: z.literal('file'), file: z.string().openapi({ description: 'Absolute path' }) }),
    z.object({ kind: z.literal('flagd'), host: z.string(), port: z.number().int() }),
  ]),
  provider_status: z
    .string()
    .openapi({ description: "OpenFeature's provider status: READY, STALE, ERROR, FATAL, NOT_READY" }),
  ml_enabled: z.boolean().nullable(),
  ml_percentage: z.number().nullable(),
  model_versions: z.array(z.string()),
  model_variants: z.array(z.string()).nullable(),
  models_loaded: z.array(z.string()),
  split: z.array(z.object({ variant: z.string(), weight: z.number() })).nullable(),
  last_changed_at: z.string().nullable(),
  last_error: z.object({ at: z.string(), message: z.string() }).nullable(),
});

export interface HealthRoutesOptions {
  flags: Pick<FlagService, 'ready' | 'status'>;
  models: Pick<ModelRegistry, 'ready' | 'versions'>;
  reject: Reject;
}

/** GET /healthz, /readyz and /v1/flags/status: what the orchestrator and ops ask of one instance. */
export function healthRoutes({ flags, models, reject }: HealthRoutesOptions) {
  const app = routeApp(reject);

  app.openapi(
    createRoute({
      method: 'get',
      path: '/healthz',
      operationId: 'getLiveness',
      tags: ['health'],
      security: PUBLIC,
      summary: 'Liveness: the process answers',
      responses: {
        200: {
          description: 'Alive',
          content: { 'application/json': { schema: z.object({ status: z.literal('ok') }) } },
        },
      },
    }),
    (c) => c.json({ status: 'ok' as const }, 200),
  );

  app.openapi(
    createRoute({
      method: 'get',
      path: '/readyz',
      operationId: 'getReadiness',
      tags: ['health'],
      security: PUBLIC,
      summary: 'Readiness: flags and the model registry are loaded',
      responses: {
        200: { description: 'Ready', content: { 'application/json': { schema: ReadySchema } } },
        503: {
          description: 'A part is not ready; it is named',
          content: { 'application/json': { schema: ReadySchema } },
        },
      },
    }),
    (c) => {
      const parts = {
        flags: flags.ready() ? ('ready' as const) : ('not_ready' as const),
        models: models.ready() ? ('ready' as const) : ('not_ready' as const),
      };
      const ready = parts.flags === 'ready' && parts.models === 'ready';
      return c.json(
        { status: ready ? ('ready' as const) : ('not_ready' as const), parts },
        ready ? 200 : 503,
      );
    },
  );

  app.openapi(
    createRoute({
      method: 'get',
      path: '/v1/flags/status',
      operationId: 'getFlagStatus',
      tags: ['health'],
      security: PUBLIC,
      summary: 'The rollout as this instance sees it',
      responses: {
        200: {
          description: 'Flag source, ML share, model versions, last change',
          content: { 'application/json': { schema: FlagStatusSchema } },
        },
      },
    }),
    (c) => c.json({ ...flags.status(), models_loaded: models.versions() }, 200),
  );
  return app;
}
