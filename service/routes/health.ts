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
  loaded_versions: z.array(z.object({ model_version: z.string(), digest: z.string().nullable() })).openapi({
    description:
      "The versions this instance has loaded from the model registry, each with its artifact's digest (sha256:...): the same digest on every replica is the same model",
  }),
  split: z.array(z.object({ variant: z.string(), weight: z.number() })).nullable(),
  last_changed_at: z.string().nullable(),
  last_error: z.object({ at: z.string(), message: z.string() }).nullable(),
  rollback_latch: z
    .object({
      held: z.boolean(),
      scope: z.enum(['shared', 'process']),
      since: z.string().nullable(),
      actor: z.string().nullable(),
      alert: z.string().nullable(),
      reason: z.string().nullable(),
      refused: z
        .object({
          ml_percentage: z.number().nullable(),
          split: z.array(z.object({ variant: z.string(), weight: z.number() })).nullable(),
        })
        .nullable(),
      checked_at: z.string().nullable(),
      last_error: z.object({ at: z.string(), message: z.string() }).nullable(),
    })
    .optional()
    .openapi({
      description:
        'The rollback latch: while held (since an automatic rollback, by its alert), no booking goes to ML whatever the split says, until a person runs rollout enable. `refused`: what the flag asks for meanwhile. `scope`: shared (read from flag_changes by every replica, every ROLLBACK_LATCH_POLL_INTERVAL_MS) or process (no DATABASE_URL: this process only, lost on restart)',
    }),
});

export interface HealthRoutesOptions {
  flags: Pick<FlagService, 'ready' | 'status'>;
  models: Pick<ModelRegistry, 'ready' | 'versions' | 'lookup'>;
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
    (c) => {
      const loaded = models.versions();
      const loaded_versions = loaded.map((model_version) => {
        const found = models.lookup(model_version);
        return { model_version, digest: (found.ok && found.model.digest) || null };
      });
      return c.json({ ...flags.status(), models_loaded: loaded, loaded_versions }, 200);
    },
  );
  return app;
}
