import { createRoute, z } from '@hono/zod-openapi';
import { FlagNotWrittenError } from '../flags/flag-writer.js';
import { requireBearer } from '../http/bearer.js';
import type { bodyLimit } from '../http/body-limit.js';
import { jsonResponses, problemContent, type Reject, routeApp } from '../http/openapi.js';
import { ProblemError } from '../http/problem.js';
import { RollbackNotWrittenError, type RolloutService } from '../rollout/rollout-service.js';

export const WEBHOOK_PATH = '/v1/webhooks/alertmanager';
/** Alertmanager posts every alert of a group: 20,000 alerts of about 700 bytes fit. */
export const WEBHOOK_BODY_LIMIT_BYTES = 16 * 1024 * 1024;

export interface WebhookRoutesOptions {
  rollout: RolloutService;
  token: string;
  reject: Reject;
  /** The webhook's own body limit, checked after its token: a rollback must act in any post. */
  bodyLimit: ReturnType<typeof bodyLimit>;
}

const AlertSchema = z.object({
  status: z.enum(['firing', 'resolved']),
  labels: z.record(z.string(), z.string()),
  annotations: z.record(z.string(), z.string()).optional(),
  fingerprint: z.string().optional(),
});

/** POST /v1/webhooks/alertmanager: the automatic rollback. */
export function webhookRoutes({ rollout, token, reject, bodyLimit }: WebhookRoutesOptions) {
  const app = routeApp(reject);
  app.use(WEBHOOK_PATH, requireBearer(token), bodyLimit);
  app.openapi(
    createRoute({
      method: 'post',
      path: WEBHOOK_PATH,
      operationId: 'receiveAlertmanagerWebhook',
      tags: ['webhooks'],
      security: [{ webhookToken: [] }],
      summary:
        'Alertmanager webhook: firing alerts labelled rollback="true" set ML traffic to 0% (bearer token)',
      description:
        'An alert whose model_version label names a version the flag does not route to (one already replaced) changes nothing: `not_served`. A flag already at 0% ML (or holding the heuristic alone) answers `already_rolled_back`. `audit` says whether the audit row was stored before the answer (`written`), is still being written (`late`: the rollback is made; the row is retried and logged), could not be stored (`failed`: it is in the log), or was not needed (`none`).',
      request: {
        headers: z.object({ authorization: z.string().optional() }),
        body: {
          required: true,
          content: {
            'application/json': {
              schema: z.object({
                status: z.string(),
                receiver: z.string().optional(),
                alerts: z.array(AlertSchema),
              }),
            },
          },
        },
      },
      responses: {
        ...jsonResponses(
          z.object({
            results: z.array(
              z.object({
                alertname: z.string(),
                outcome: z.enum(['rolled_back', 'already_rolled_back', 'not_served', 'ignored']),
                model_version: z.string().optional(),
              }),
            ),
            ml_percentage: z.number().nullable(),
            audit: z.enum(['written', 'late', 'failed', 'none']),
          }),
          'What each alert did',
        ),
        401: { description: 'Missing or wrong bearer token', content: problemContent },
        503: {
          description:
            'The rollback was not written: the flag store refused it or could not be reached (ML still serves), or the flag file could not be written (this process alone rolled back)',
          content: problemContent,
        },
      },
    }),
    async (c) => {
      try {
        return c.json(await rollout.rollbackOn(c.req.valid('json').alerts), 200);
      } catch (err) {
        if (!(err instanceof RollbackNotWrittenError)) throw err;
        // A 5xx: Alertmanager sends the post again, and the next try writes once the store is mended.
        const here = err.cause instanceof FlagNotWrittenError;
        throw new ProblemError(
          {
            type: '/problems/rollback-not-written',
            title: here ? 'Rolled back in this process only' : 'Rollback not written',
            status: 503,
            detail: here
              ? `${err.alertname}: this process routes every booking to the heuristic, but ${err.message}; other processes reading the flag file still serve ML. Mend the flag file (docs/runbook.md#rollback-by-hand).`
              : `${err.alertname}: ${err.message}; ML still serves. Alertmanager sends it again; roll back by hand (docs/runbook.md#rollback-by-hand).`,
          },
          'rollback_not_written',
        );
      }
    },
  );
  return app;
}
