import { OpenAPIHono } from '@hono/zod-openapi';
import type { Tracer } from '@opentelemetry/api';
import { HTTPException } from 'hono/http-exception';
import type { Logger } from 'pino';
import type { WeatherProvider } from './domain/weather.js';
import type { DriftMonitor } from './drift/drift-monitor.js';
import type { FeedbackService } from './feedback/feedback-service.js';
import type { FlagService } from './flags/flag-service.js';
import { bodyLimit } from './http/body-limit.js';
import { createReject, DOCUMENT, SECURITY_SCHEMES } from './http/openapi.js';
import { ProblemError } from './http/problem.js';
import { routeTelemetry } from './http/route-telemetry.js';
import type { ModelRegistry } from './models/model-registry.js';
import { createPredictionService, MlUnavailableError } from './predictions/prediction-service.js';
import type { Reports } from './reports/reports.js';
import type { RolloutService } from './rollout/rollout-service.js';
import { feedbackRoutes } from './routes/feedback.js';
import { healthRoutes } from './routes/health.js';
import { predictionRoutes } from './routes/predictions.js';
import { reportRoutes } from './routes/reports.js';
import { WEBHOOK_BODY_LIMIT_BYTES, WEBHOOK_PATH, webhookRoutes } from './routes/webhooks.js';
import type { PredictionLog } from './storage/prediction-log.js';
import type { ServiceMetrics } from './telemetry/service-metrics.js';

export { WEBHOOK_BODY_LIMIT_BYTES } from './routes/webhooks.js';

export interface AppDeps {
  flags: FlagService;
  models: ModelRegistry;
  weather: WeatherProvider;
  metrics: ServiceMetrics;
  logger: Logger;
  limits: { bodyLimitBytes: number; batchMaxBookings: number };
  tracer: Tracer;
  drift?: DriftMonitor;
  /** Where served predictions are kept; without it nothing is stored (tests, benchmarks). */
  predictionLog?: PredictionLog;
  /** Persistence: without it the feedback and report routes are not mounted. */
  storage?: { feedback: FeedbackService; reports: Reports };
  /** Bearer token the feedback endpoints require; absent, they are open (the embedded default, warned at start). */
  feedbackToken?: string;
  /** Bearer token the prediction endpoints require; absent, they are open (only the first prediction is scored). */
  predictionsToken?: string;
  /** Bearer token the report and monitoring endpoints require; absent, they are open (warned at start). */
  reportsToken?: string;
  /** The rollback webhook; absent (no token configured) the route does not exist. */
  rollback?: { token: string; rollout: RolloutService };
  /** SHADOW_MODEL_VERSION: a challenger scored beside every answer, never served. */
  shadowVersion?: string;
}

/**
 * The HTTP surface: the middleware every route shares (media type, body limit), one sub-app per resource
 * (service/routes/), and the mapping of errors and unknown paths to problem documents (docs/api.md).
 */
export function createApp(deps: AppDeps) {
  const { flags, models, metrics, logger, limits } = deps;
  const reject = createReject(metrics);
  const app = new OpenAPIHono();
  app.use('*', routeTelemetry);

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

  const { batchMaxBookings } = limits;
  app.route(
    '/',
    predictionRoutes({
      predictions: createPredictionService(deps),
      flags,
      models,
      metrics,
      reject,
      batchMaxBookings,
      token: deps.predictionsToken,
    }),
  );
  if (deps.storage) {
    const { feedback, reports } = deps.storage;
    app.route('/', feedbackRoutes({ feedback, reject, batchMaxBookings, token: deps.feedbackToken }));
    app.route('/', reportRoutes({ reports, reject, token: deps.reportsToken }));
  }
  if (deps.rollback) {
    app.route(
      '/',
      webhookRoutes({
        ...deps.rollback,
        reject,
        bodyLimit: limitTo(WEBHOOK_BODY_LIMIT_BYTES, 'set max_alerts on the webhook receiver'),
      }),
    );
  }
  app.route('/', healthRoutes({ flags, models, reject }));

  for (const [name, scheme] of Object.entries(SECURITY_SCHEMES))
    app.openAPIRegistry.registerComponent('securitySchemes', name, scheme);
  app.doc31('/openapi.json', DOCUMENT);

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
