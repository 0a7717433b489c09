import { createRoute, z } from '@hono/zod-openapi';
import type { FeedbackService } from '../feedback/feedback-service.js';
import {
  guarded,
  jsonResponses,
  optionalBearer,
  problemContent,
  type Reject,
  routeApp,
} from '../http/openapi.js';
import { ProblemError } from '../http/problem.js';
import { FeedbackResultSchema, FeedbackSchema, feedbackBatchSchema } from '../predictions/schemas.js';

export interface FeedbackRoutesOptions {
  feedback: FeedbackService;
  reject: Reject;
  batchMaxBookings: number;
  /** Bearer token the feedback endpoints require; absent, they are open (the embedded default, warned at start). */
  token?: string | undefined;
}

/** POST /v1/feedback and /v1/feedback/batch: actual delays, scored against the first prediction served. */
export function feedbackRoutes({ feedback, reject, batchMaxBookings, token }: FeedbackRoutesOptions) {
  const app = routeApp(reject);
  const unauthorized = guarded(app, ['/v1/feedback', '/v1/feedback/batch'], token, 'FEEDBACK_TOKEN');

  app.openapi(
    createRoute({
      method: 'post',
      path: '/v1/feedback',
      operationId: 'submitFeedback',
      tags: ['feedback'],
      security: optionalBearer('feedbackToken'),
      summary:
        'The actual delay of a predicted booking (idempotent per booking; a new value corrects the old)',
      request: { body: { required: true, content: { 'application/json': { schema: FeedbackSchema } } } },
      responses: {
        ...jsonResponses(FeedbackResultSchema, 'recorded, unchanged (a repeat) or corrected'),
        404: { description: 'No prediction was stored for this booking', content: problemContent },
        ...unauthorized,
      },
    }),
    async (c) => {
      const [result] = await feedback.submit([c.req.valid('json')]);
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
      operationId: 'submitFeedbackBatch',
      tags: ['feedback'],
      security: optionalBearer('feedbackToken'),
      summary: `Up to ${batchMaxBookings} feedback items; each answered on its own (unknown_booking included)`,
      request: {
        body: {
          required: true,
          content: { 'application/json': { schema: feedbackBatchSchema(batchMaxBookings) } },
        },
      },
      responses: {
        ...jsonResponses(
          z.object({ results: z.array(FeedbackResultSchema) }),
          'One result per item, in order',
        ),
        ...unauthorized,
      },
    }),
    async (c) => c.json({ results: await feedback.submit(c.req.valid('json').feedback) }, 200),
  );
  return app;
}
