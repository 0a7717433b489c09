import { createRoute, type z } from '@hono/zod-openapi';
import { HEURISTIC_VARIANT } from '../domain/flags.js';
import type { FlagService } from '../flags/flag-service.js';
import { guarded, optionalBearer, problemResponses, type Reject, routeApp } from '../http/openapi.js';
import { ProblemError } from '../http/problem.js';
import type { ModelRegistry } from '../models/model-registry.js';
import type { Endpoint, PredictionService } from '../predictions/prediction-service.js';
import {
  BatchResponseSchema,
  BookingSchema,
  batchRequestSchema,
  type Prediction,
  PredictionSchema,
} from '../predictions/schemas.js';
import type { ServiceMetrics } from '../telemetry/service-metrics.js';

export interface PredictionRoutesOptions {
  predictions: PredictionService;
  /** Readiness: no prediction is answered before flags and models are loaded. */
  flags: Pick<FlagService, 'ready'>;
  models: Pick<ModelRegistry, 'ready'>;
  metrics: ServiceMetrics;
  reject: Reject;
  batchMaxBookings: number;
  /** Bearer token the prediction endpoints require; absent, they are open (only the first prediction is scored). */
  token?: string | undefined;
}

/** Labelled by where the flag sent the bookings, so the latency ML adds is seen beside the heuristic's. */
function assignmentOf(answered: { variant: string }[]) {
  const ml = answered.filter((p) => p.variant !== HEURISTIC_VARIANT).length;
  return ml === 0 ? 'heuristic' : ml === answered.length ? 'ml' : 'mixed';
}

/** POST /v1/predictions and /v1/predictions/batch. */
export function predictionRoutes({
  predictions,
  flags,
  models,
  metrics,
  reject,
  batchMaxBookings,
  token,
}: PredictionRoutesOptions) {
  const app = routeApp(reject);
  const unauthorized = guarded(app, ['/v1/predictions', '/v1/predictions/batch'], token, 'PREDICTIONS_TOKEN');

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
  const timed = async (endpoint: Endpoint, work: () => Promise<Prediction[]>) => {
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

  app.openapi(
    createRoute({
      method: 'post',
      path: '/v1/predictions',
      operationId: 'predictDelay',
      tags: ['predictions'],
      security: optionalBearer('predictionsToken'),
      summary: 'Predict the delay of one booking',
      request: { body: { required: true, content: { 'application/json': { schema: BookingSchema } } } },
      responses: {
        200: { description: 'The prediction', content: { 'application/json': { schema: PredictionSchema } } },
        ...problemResponses,
        ...unauthorized,
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
      operationId: 'predictDelays',
      tags: ['predictions'],
      security: optionalBearer('predictionsToken'),
      summary: `Predict up to ${batchMaxBookings} bookings, answered in the same order`,
      description: 'One invalid booking rejects the whole batch; the problem names its index.',
      request: {
        body: {
          required: true,
          content: { 'application/json': { schema: batchRequestSchema(batchMaxBookings) } },
        },
      },
      responses: {
        200: {
          description: 'Predictions in request order',
          content: { 'application/json': { schema: BatchResponseSchema } },
        },
        ...problemResponses,
        ...unauthorized,
      },
    }),
    async (c) => {
      assertReady();
      const { bookings } = c.req.valid('json');
      return c.json({ predictions: await timed('batch', () => predictions.predict(bookings, 'batch')) }, 200);
    },
  );
  return app;
}
