import { createRoute, OpenAPIHono, z } from '@hono/zod-openapi';
import type { Tracer } from '@opentelemetry/api';
import { HTTPException } from 'hono/http-exception';
import type { Logger } from 'pino';
import type { DriftMonitor } from './drift/drift-monitor.js';
import type { FeedbackService } from './feedback/feedback-service.js';
import { HEURISTIC_VARIANT } from './flags/flag-config.js';
import type { FlagService } from './flags/flag-service.js';
import { type FlagChange, FlagNotWrittenError } from './flags/flag-writer.js';
import { requireBearer } from './http/bearer.js';
import { bodyLimit } from './http/body-limit.js';
import { type Problem, ProblemError, problemResponse, validationProblem } from './http/problem.js';
import type { ModelRegistry } from './models/model-registry.js';
import { createPredictionService, MlUnavailableError } from './predictions/prediction-service.js';
import {
  BatchResponseSchema,
  BookingSchema,
  batchRequestSchema,
  FeedbackResultSchema,
  FeedbackSchema,
  feedbackBatchSchema,
  type Prediction,
  PredictionSchema,
  ProblemSchema,
} from './predictions/schemas.js';
import type { Reports } from './reports/reports.js';
import type { RolloutService } from './rollout/rollout-service.js';
import type { PredictionLog } from './storage/prediction-log.js';
import type { ServiceMetrics } from './telemetry/service-metrics.js';
import type { WeatherProvider } from './weather/weather.js';

export interface AppDeps {
  flags: FlagService;
  models: ModelRegistry;
  weather: WeatherProvider;
  metrics: ServiceMetrics;
  logger: Logger;
  limits: { bodyLimitBytes: number; batchMaxBookings: number };
  mlTimeoutMs: number;
  tracer: Tracer;
  drift?: DriftMonitor;
  /** Persistence: without it predictions are not kept and feedback and reports answer 503. */
  predictionLog?: PredictionLog;
  storage?: { feedback: FeedbackService; reports: Reports };
  /** Bearer token the feedback endpoints require; absent, they are open (the embedded default, warned at start). */
  feedbackToken?: string;
  /** Bearer token the prediction endpoints require; absent, they are open (only the first prediction is scored). */
  predictionsToken?: string;
  /** The rollback webhook; absent (no token configured) the route does not exist. */
  rollback?: { token: string; rollout: RolloutService };
}

const problemContent = { 'application/problem+json': { schema: ProblemSchema } };
const problemResponses = {
  400: { description: 'Invalid body: every bad field, by JSON pointer', content: problemContent },
  413: { description: 'Body over the size limit', content: problemContent },
  415: { description: 'Body is not application/json', content: problemContent },
  503: { description: 'Not ready, or ML failed with ml-fallback-on-error off', content: problemContent },
};

const WEBHOOK_PATH = '/v1/webhooks/alertmanager';
/** Alertmanager posts every alert of a group: 20,000 alerts of about 700 bytes fit. */
export const WEBHOOK_BODY_LIMIT_BYTES = 16 * 1024 * 1024;

export function createApp(deps: AppDeps) {
  const { flags, models, metrics, logger, limits } = deps;
  const predictions = createPredictionService(deps);

  const reject = (problem: Problem, reason: string, headers?: Record<string, string>) => {
    metrics.rejectedRequests.add(1, { reason });
    return problemResponse(problem, headers);
  };

  const app = new OpenAPIHono({
    defaultHook: (result) => {
      if (!result.success) return reject(validationProblem(result.error), 'validation');
    },
  });

  app.use('/v1/*', async (c, next) => {
    if (c.req.method !== 'POST') return next();
    const type = c.req.header('content-type') ?? '';
    if (!/^application\/([\w.+-]+\+)?json\s*(;|$)/i.test(type)) {
      return reject(
        {
          type: '/problems/unsupported-media-type',
          title: 'Unsupported media type',
          status: 415,
          detail: `Send the body as application/json (got ${type ? `'${type.slice(0, 100)}'` : 'no content-type'}).`,
        },
        'unsupported_media_type',
        { accept: 'application/json' },
      );
    }
    return next();
  });

  const limitTo = (maxBytes: number, advice: string) =>
    bodyLimit({
      maxBytes,
      onTooLarge: () =>
        reject(
          {
            type: '/problems/body-too-large',
            title: 'Request body too large',
            status: 413,
            detail: `The body limit is ${maxBytes} bytes; ${advice}.`,
          },
          'body_too_large',
        ),
    });
  const bodyLimited = limitTo(limits.bodyLimitBytes, 'split the batch');
  // The webhook has its own, larger limit, checked after its token: a rollback must act in any post.
  app.use('/v1/*', (c, next) => (c.req.path === WEBHOOK_PATH ? next() : bodyLimited(c, next)));

  const assertReady = () => {
    if (flags.ready() && models.ready()) return;
    throw new ProblemError(
      {
        type: '/problems/not-ready',
        title: 'Service not ready',
        status: 503,
        detail: 'Flags or the model registry are still loading; retry shortly.',
      },
      'not_ready',
      { 'retry-after': '1' },
    );
  };

  // Labelled by where the flag sent the bookings, so the latency ML adds is seen beside the heuristic's.
  const assignmentOf = (answered: { variant: string }[]) => {
    const ml = answered.filter((p) => p.variant !== HEURISTIC_VARIANT).length;
    return ml === 0 ? 'heuristic' : ml === answered.length ? 'ml' : 'mixed';
  };
  const timed = async (endpoint: 'single' | 'batch', work: () => Promise<Prediction[]>) => {
    const start = performance.now();
    let assignment = 'failed';
    try {
      const answered = await work();
      assignment = assignmentOf(answered);
      return answered;
    } finally {
      metrics.predictionDuration.record((performance.now() - start) / 1000, { endpoint, assignment });
    }
  };

  /** Requires `token` on `paths` when it is set; returns the 401 their OpenAPI responses document. */
  const guarded = (paths: string[], token: string | undefined, variable: string) => {
    if (token) for (const path of paths) app.use(path, requireBearer(token));
    return {
      401: {
        description: `Missing or wrong bearer token (when ${variable} is set)`,
        content: problemContent,
      },
    };
  };
  const predictionsUnauthorized = guarded(
    ['/v1/predictions', '/v1/predictions/batch'],
    deps.predictionsToken,
    'PREDICTIONS_TOKEN',
  );

  app.openapi(
    createRoute({
      method: 'post',
      path: '/v1/predictions',
      summary: 'Predict the delay of one booking',
      request: { body: { required: true, content: { 'application/json': { schema: BookingSchema } } } },
      responses: {
        200: { description: 'The prediction', content: { 'application/json': { schema: PredictionSchema } } },
        ...problemResponses,
        ...predictionsUnauthorized,
      },
    }),
    async (c) => {
      assertReady();
      const [prediction] = await timed('single', () => predictions.predict([c.req.valid('json')], 'single'));
      return c.json(prediction as z.infer<typeof PredictionSchema>, 200);
    },
  );

  app.openapi(
    createRoute({
      method: 'post',
      path: '/v1/predictions/batch',
      summary: `Predict up to ${limits.batchMaxBookings} bookings, answered in the same order`,
      description: 'One invalid booking rejects the whole batch; the problem names its index.',
      request: {
        body: {
          required: true,
          content: { 'application/json': { schema: batchRequestSchema(limits.batchMaxBookings) } },
        },
      },
      responses: {
        200: {
          description: 'Predictions in request order',
          content: { 'application/json': { schema: BatchResponseSchema } },
        },
        ...problemResponses,
        ...predictionsUnauthorized,
      },
    }),
    async (c) => {
      assertReady();
      const { bookings } = c.req.valid('json');
      return c.json({ predictions: await timed('batch', () => predictions.predict(bookings, 'batch')) }, 200);
    },
  );

  const storage = () => {
    if (deps.storage) return deps.storage;
    throw new ProblemError(
      { type: '/problems/storage-unavailable', title: 'No database configured', status: 503 },
      'storage_unavailable',
    );
  };
  const json = (schema: z.ZodType, description: string) => ({
    200: { description, content: { 'application/json': { schema } } },
    ...problemResponses,
  });

  const unauthorized = guarded(['/v1/feedback', '/v1/feedback/batch'], deps.feedbackToken, 'FEEDBACK_TOKEN');

  app.openapi(
    createRoute({
      method: 'post',
      path: '/v1/feedback',
      summary:
        'The actual delay of a predicted booking (idempotent per booking; a new value corrects the old)',
      request: { body: { required: true, content: { 'application/json': { schema: FeedbackSchema } } } },
      responses: {
        ...json(FeedbackResultSchema, 'recorded, unchanged (a repeat) or corrected'),
        404: { description: 'No prediction was stored for this booking', content: problemContent },
        ...unauthorized,
      },
    }),
    async (c) => {
      const [result] = await storage().feedback.submit([c.req.valid('json')]);
      if (result?.outcome === 'unknown_booking') {
        throw new ProblemError(
          {
            type: '/problems/unknown-booking',
            title: 'Unknown booking',
            status: 404,
            detail: `No prediction is stored for booking '${result.booking_id}'; nothing was recorded.`,
          },
          'unknown_booking',
        );
      }
      return c.json(result as z.infer<typeof FeedbackResultSchema>, 200);
    },
  );

  app.openapi(
    createRoute({
      method: 'post',
      path: '/v1/feedback/batch',
      summary: `Up to ${limits.batchMaxBookings} feedback items; each answered on its own (unknown_booking included)`,
      request: {
        body: {
          required: true,
          content: { 'application/json': { schema: feedbackBatchSchema(limits.batchMaxBookings) } },
        },
      },
      responses: {
        ...json(z.object({ results: z.array(FeedbackResultSchema) }), 'One result per item, in order'),
        ...unauthorized,
      },
    }),
    async (c) => c.json({ results: await storage().feedback.submit(c.req.valid('json').feedback) }, 200),
  );

  const report = z.record(z.string(), z.unknown());
  app.openapi(
    createRoute({
      method: 'get',
      path: '/v1/ab-report',
      summary:
        'ML vs heuristic per arm (n, MAE, RMSE, R²) and paired on the same bookings, with a 95% bootstrap interval',
      request: { query: z.object({ days: z.coerce.number().int().min(1).max(365).default(30) }) },
      responses: json(report, 'The comparison and its verdict'),
    }),
    async (c) => c.json(await storage().reports.abReport({ days: c.req.valid('query').days }), 200),
  );

  app.openapi(
    createRoute({
      method: 'get',
      path: '/v1/monitoring/summary',
      summary: 'Last 24 hours: volumes, ML share, fallbacks, weather defaults, accuracy per arm',
      responses: json(report, 'Summary'),
    }),
    async (c) => c.json(await storage().reports.summary(), 200),
  );

  app.openapi(
    createRoute({
      method: 'get',
      path: '/v1/monitoring/daily',
      summary: 'Per UTC day: predictions, ML share, feedback, MAE per source',
      request: { query: z.object({ days: z.coerce.number().int().min(1).max(90).default(7) }) },
      responses: json(z.object({ days: z.array(report) }), 'Newest day first'),
    }),
    async (c) => c.json({ days: await storage().reports.daily(c.req.valid('query').days) }, 200),
  );

  app.openapi(
    createRoute({
      method: 'get',
      path: '/v1/monitoring/predictions',
      summary: 'The latest stored predictions, with their actual delay when known',
      request: { query: z.object({ limit: z.coerce.number().int().min(1).max(500).default(50) }) },
      responses: json(z.object({ predictions: z.array(report) }), 'Newest first'),
    }),
    async (c) => c.json({ predictions: await storage().reports.latest(c.req.valid('query').limit) }, 200),
  );

  app.openapi(
    createRoute({
      method: 'get',
      path: '/v1/monitoring/anomalies',
      summary: 'Predictions of the last 7 days whose absolute error exceeds threshold_mae minutes',
      request: { query: z.object({ threshold_mae: z.coerce.number().min(0).max(1440).default(5) }) },
      responses: json(z.object({ anomalies: z.array(report) }), 'Newest first, 100 at most'),
    }),
    async (c) =>
      c.json({ anomalies: await storage().reports.anomalies(c.req.valid('query').threshold_mae) }, 200),
  );

  if (deps.rollback) {
    const { token, rollout } = deps.rollback;
    app.use(
      WEBHOOK_PATH,
      requireBearer(token),
      limitTo(WEBHOOK_BODY_LIMIT_BYTES, 'set max_alerts on the webhook receiver'),
    );
    const AlertSchema = z.object({
      status: z.enum(['firing', 'resolved']),
      labels: z.record(z.string(), z.string()),
      annotations: z.record(z.string(), z.string()).optional(),
      fingerprint: z.string().optional(),
    });
    app.openapi(
      createRoute({
        method: 'post',
        path: WEBHOOK_PATH,
        summary:
          'Alertmanager webhook: firing alerts labelled rollback="true" set ML traffic to 0% (bearer token)',
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
          ...json(
            z.object({
              results: z.array(z.object({ alertname: z.string(), outcome: z.string() })),
              ml_percentage: z.number().nullable(),
            }),
            'What each alert did',
          ),
          401: { description: 'Missing or wrong bearer token', content: problemContent },
          503: {
            description: 'Rolled back in this process only: the flag file could not be written',
            content: problemContent,
          },
        },
      }),
      async (c) => {
        const results: { alertname: string; outcome: string }[] = [];
        let percentage: number | null = null;
        // One rollback per post: once ML is at 0%, the other firing alerts of the post cannot change it, and
        // re-reading the flag file for each of up to 1,000 alerts would hold the event loop for seconds.
        let rolledBack = false;
        for (const alert of c.req.valid('json').alerts) {
          const alertname = alert.labels.alertname ?? 'unknown';
          let outcome = 'ignored';
          const asksRollback = alert.status === 'firing' && alert.labels.rollback === 'true';
          if (asksRollback && rolledBack) {
            outcome = 'already_rolled_back';
          } else if (asksRollback) {
            let change: FlagChange;
            try {
              change = await rollout.setPercentage(0, {
                actor: 'alertmanager',
                action: 'rollback',
                alertName: alertname,
                fingerprint: alert.fingerprint,
                labels: alert.labels,
                reason: `${alert.labels.signal ?? 'unknown'} signal: ${alert.annotations?.summary ?? alertname}`,
              });
            } catch (err) {
              if (!(err instanceof FlagNotWrittenError)) throw err;
              // A 5xx: Alertmanager sends the post again, and the next try writes once the file is mended.
              metrics.webhookAlerts.add(1, { outcome: 'rolled_back_here_only' });
              throw new ProblemError(
                {
                  type: '/problems/rollback-not-written',
                  title: 'Rolled back in this process only',
                  status: 503,
                  detail: `${alertname}: this process routes every booking to the heuristic, but ${err.message}; other processes reading the flag file still serve ML. Mend the flag file (docs/runbook.md#rollback-by-hand).`,
                },
                'rollback_not_written',
              );
            }
            outcome = change.changed ? 'rolled_back' : 'already_rolled_back';
            percentage = change.next.mlPercentage;
            rolledBack = percentage === 0;
          }
          metrics.webhookAlerts.add(1, { outcome });
          results.push({ alertname, outcome });
        }
        return c.json({ results, ml_percentage: percentage }, 200);
      },
    );
  }

  app.openapi(
    createRoute({
      method: 'get',
      path: '/healthz',
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

  const ReadySchema = z.object({
    status: z.enum(['ready', 'not_ready']),
    parts: z.object({ flags: z.enum(['ready', 'not_ready']), models: z.enum(['ready', 'not_ready']) }),
  });
  app.openapi(
    createRoute({
      method: 'get',
      path: '/readyz',
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
      summary: 'The rollout as this instance sees it',
      responses: {
        200: {
          description: 'Flag source, ML share, model versions, last change',
          content: {
            'application/json': {
              schema: z.object({
                source: z.record(z.string(), z.union([z.string(), z.number()])),
                provider_status: z.string(),
                ml_enabled: z.boolean().nullable(),
                ml_percentage: z.number().nullable(),
                model_versions: z.array(z.string()),
                model_variants: z.array(z.string()).nullable(),
                models_loaded: z.array(z.string()),
                split: z.array(z.object({ variant: z.string(), weight: z.number() })).nullable(),
                last_changed_at: z.string().nullable(),
                last_error: z.object({ at: z.string(), message: z.string() }).nullable(),
              }),
            },
          },
        },
      },
    }),
    (c) => c.json({ ...flags.status(), models_loaded: models.versions() }, 200),
  );

  app.doc31('/openapi.json', {
    openapi: '3.1.0',
    info: { title: 'Delay prediction service', version: '1.0.0' },
  });

  app.notFound((c) => {
    const allowed = allowedMethods(app, c.req.path);
    if (allowed.length > 0) {
      return reject(
        {
          type: '/problems/method-not-allowed',
          title: 'Method not allowed',
          status: 405,
          detail: `${c.req.method} is not allowed on ${c.req.path}; use ${allowed.join(', ')}.`,
        },
        'method_not_allowed',
        { allow: allowed.join(', ') },
      );
    }
    return reject(
      {
        type: '/problems/not-found',
        title: 'Not found',
        status: 404,
        detail: 'No such endpoint; see /openapi.json.',
      },
      'not_found',
    );
  });

  app.onError((err, c) => {
    if (err instanceof ProblemError) return reject(err.problem, err.reason, err.headers);
    if (err instanceof MlUnavailableError) {
      return reject(
        {
          type: '/problems/ml-unavailable',
          title: 'Model unavailable and fallback disabled',
          status: 503,
          detail: `${err.reason} for model ${err.modelVersion}: ${err.message}. The ml-fallback-on-error flag is off.`,
          fallback_reason: err.reason,
          model_version: err.modelVersion,
        },
        'ml_unavailable',
      );
    }
    if (err instanceof HTTPException && err.status === 400) {
      return reject(
        {
          type: '/problems/malformed-json',
          title: 'Malformed JSON',
          status: 400,
          detail: 'The body is not valid JSON.',
        },
        'malformed_json',
      );
    }
    logger.error({ err, method: c.req.method, route: c.req.routePath }, 'unhandled error');
    return reject(
      { type: '/problems/internal', title: 'Internal error', status: 500, detail: 'The error was logged.' },
      'internal',
    );
  });

  return app;
}

function allowedMethods(app: OpenAPIHono, path: string): string[] {
  const methods = app.routes
    .filter((r) => r.method !== 'ALL' && r.path === path)
    .map((r) => r.method.toUpperCase());
  return [...new Set(methods)];
}
