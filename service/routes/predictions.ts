import { createRoute, type z } from '@hono/zod-openapi';
import { HEURISTIC_VARIANT } from '../domain/flags.js';
import type { FlagService } from '../flags/flag-service.js';
import {
  guarded,
  optionalBearer,
  problemContent,
  problemResponses,
  type Reject,
  routeApp,
} from '../http/openapi.js';
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

/**
 * Batches scored at once, and batches waiting for their turn. A batch of 1,000 holds the event loop for tens of
 * milliseconds at a time (validation, flag evaluations, the model, its answer): one at a time, single predictions
 * get the loop between those stretches, and a burst of batches waits in line or is refused, instead of
 * starving everything (docs/performance.md).
 */
export const BATCH_ADMISSION = { concurrency: 1, queue: 8 } as const;

/** At most `concurrency` holders; up to `queue` wait in order; `acquire` answers false beyond that. */
function admission({ concurrency, queue }: { concurrency: number; queue: number }) {
  let holders = 0;
  const waiting: (() => void)[] = [];
  return {
    async acquire(): Promise<boolean> {
      if (holders < concurrency) {
        holders += 1;
        return true;
      }
      if (waiting.length >= queue) return false;
      await new Promise<void>((resolve) => waiting.push(resolve));
      return true;
    },
    /** Hands the slot to the next waiting, or frees it. */
    release() {
      const nextInLine = waiting.shift();
      if (nextInLine) nextInLine();
      else holders -= 1;
    },
  };
}

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
  /** Batches scored at once and waiting; beyond both, 503 with Retry-After (BATCH_ADMISSION by default). */
  batchAdmission?: { concurrency: number; queue: number };
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
  batchAdmission = BATCH_ADMISSION,
}: PredictionRoutesOptions) {
  const app = routeApp(reject);
  const unauthorized = guarded(app, ['/v1/predictions', '/v1/predictions/batch'], token, 'PREDICTIONS_TOKEN');
  // After the token, before the body is read: a refused batch costs no parsing.
  const batches = admission(batchAdmission);
  app.use('/v1/predictions/batch', async (c, next) => {
    if (c.req.method !== 'POST') return next();
    if (!(await batches.acquire())) {
      throw new ProblemError(
        {
          type: '/problems/overloaded',
          title: 'Too many batches at once',
          status: 503,
          detail: `${batchAdmission.concurrency} batch(es) are being scored and ${batchAdmission.queue} wait their turn; retry after the Retry-After delay. Single predictions are still answered.`,
        },
        'overloaded',
        { 'retry-after': '1' },
      );
    }
    try {
      await next();
    } finally {
      batches.release();
    }
  });

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
        503: {
          description:
            'Not ready; too many batches at once (`/problems/overloaded`, Retry-After); or ML failed with ml-fallback-on-error off',
          content: problemContent,
        },
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
