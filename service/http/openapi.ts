import { OpenAPIHono, type z } from '@hono/zod-openapi';
import { ProblemSchema } from '../predictions/schemas.js';
import type { RejectionReason, ServiceMetrics } from '../telemetry/service-metrics.js';
import { requireBearer } from './bearer.js';
import { type Problem, problemResponse, validationProblem } from './problem.js';

/** Answers a problem document and counts it by reason (`delay_http_rejected_requests_total`). */
export type Reject = (
  problem: Problem,
  reason: RejectionReason,
  headers?: Record<string, string>,
) => Response;

export function createReject(metrics: ServiceMetrics): Reject {
  return (problem, reason, headers) => {
    metrics.rejectedRequests.add(1, { reason });
    return problemResponse(problem, headers);
  };
}

/** A resource's sub-app: every validation failure answers one problem naming each bad field. */
export function routeApp(reject: Reject) {
  return new OpenAPIHono({
    defaultHook: (result) => {
      if (!result.success) return reject(validationProblem(result.error, result.target), 'validation');
    },
  });
}

export type RouteApp = ReturnType<typeof routeApp>;

export const problemContent = { 'application/problem+json': { schema: ProblemSchema } };
export const problemResponses = {
  400: { description: 'Invalid body: every bad field, by JSON pointer', content: problemContent },
  413: { description: 'Body over the size limit', content: problemContent },
  415: { description: 'Body is not application/json', content: problemContent },
  503: { description: 'Not ready, or ML failed with ml-fallback-on-error off', content: problemContent },
};

/** A 200 JSON answer of `schema`, with the problems every route with a body may answer. */
export const jsonResponses = (schema: z.ZodType, description: string) => ({
  200: { description, content: { 'application/json': { schema } } },
  ...problemResponses,
});

/** A 200 JSON answer of a GET: no body, so neither 413 nor 415. */
export const getResponses = (schema: z.ZodType, description: string) => ({
  200: { description, content: { 'application/json': { schema } } },
  400: { description: 'Invalid query parameters', content: problemContent },
  503: { description: 'The database does not answer', content: problemContent },
});

/** Bearer schemes of the OpenAPI document: the endpoints taking a token name one (docs/api.md). */
export const SECURITY_SCHEMES = {
  predictionsToken: { type: 'http', scheme: 'bearer', description: 'PREDICTIONS_TOKEN, when set' },
  feedbackToken: { type: 'http', scheme: 'bearer', description: 'FEEDBACK_TOKEN, when set' },
  reportsToken: { type: 'http', scheme: 'bearer', description: 'REPORTS_TOKEN, when set' },
  webhookToken: { type: 'http', scheme: 'bearer', description: 'ALERTMANAGER_WEBHOOK_TOKEN' },
} as const;

/** The security of an endpoint that takes no token: declared, so an unsecured operation is a choice. */
export const PUBLIC: Record<string, string[]>[] = [];

/** The document's head: `/` is the instance that serves it, wherever it is deployed. */
export const DOCUMENT = {
  openapi: '3.1.0',
  info: {
    title: 'Delay prediction service',
    version: '1.0.0',
    description:
      'Delay predictions for bookings, their feedback, the A/B report and monitoring (docs/api.md).',
    license: { name: 'Proprietary', identifier: 'LicenseRef-Proprietary' },
  },
  servers: [{ url: '/', description: 'The instance serving this document' }],
  tags: [
    { name: 'feedback', description: 'Actual delays, scored against the first prediction of a booking' },
    { name: 'health', description: 'Liveness, readiness and the rollout this instance serves' },
    { name: 'predictions', description: 'Delay predictions, one booking or a batch' },
    { name: 'reports', description: 'The A/B report and monitoring, read from the stored predictions' },
    { name: 'webhooks', description: "Alertmanager's automatic rollback" },
  ],
};

/** Requires `token` on `paths` of `app` when it is set; returns the 401 their OpenAPI responses document. */
export function guarded(app: RouteApp, paths: string[], token: string | undefined, variable: string) {
  if (token) for (const path of paths) app.use(path, requireBearer(token));
  return {
    401: {
      description: `Missing or wrong bearer token (when ${variable} is set)`,
      content: problemContent,
    },
  };
}

/** A token the endpoint requires only when its variable is set: the empty requirement is the open case. */
export const optionalBearer = (scheme: keyof typeof SECURITY_SCHEMES): Record<string, string[]>[] => [
  {},
  { [scheme]: [] },
];
