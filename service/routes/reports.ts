import { createRoute, z } from '@hono/zod-openapi';
import { getResponses, guarded, optionalBearer, type Reject, routeApp } from '../http/openapi.js';
import {
  AbReportSchema,
  AnomalySchema,
  DailyRowSchema,
  MonitoringSummarySchema,
  StoredPredictionSchema,
} from '../reports/report-schemas.js';
import type { Reports } from '../reports/reports.js';

/**
 * A number from the query string. An empty value (`threshold_mae=`) is refused with a message that says so:
 * coerced, it would read as 0, a valid threshold that lists every scored prediction.
 */
function queryNumber(name: string, bounded: (n: z.ZodCoercedNumber<unknown>) => z.ZodType<number>) {
  return z.preprocess(
    (value, ctx) => {
      if (typeof value === 'string' && value.trim() === '') {
        ctx.issues.push({
          code: 'custom',
          message: `${name} is empty: give a number, or leave the parameter out for its default`,
          input: value,
        });
        return z.NEVER;
      }
      return value;
    },
    bounded(
      z.coerce.number({
        error: (issue) =>
          issue.code === 'invalid_type' && issue.expected === 'number'
            ? `${name} must be a number`
            : undefined,
      }),
    ),
  );
}

export interface ReportRoutesOptions {
  reports: Reports;
  reject: Reject;
  /** Bearer token the reports require (they list booking ids); absent, they are open (warned at start). */
  token?: string | undefined;
}

/** GET /v1/ab-report and /v1/monitoring/*: reads of the stored predictions and feedback. */
export function reportRoutes({ reports, reject, token }: ReportRoutesOptions) {
  const app = routeApp(reject);
  // Every monitoring path, those added later included.
  const unauthorized = guarded(app, ['/v1/ab-report', '/v1/monitoring/*'], token, 'REPORTS_TOKEN');
  const security = optionalBearer('reportsToken');
  const answers = (schema: Parameters<typeof getResponses>[0], description: string) => ({
    ...getResponses(schema, description),
    ...unauthorized,
  });

  app.openapi(
    createRoute({
      method: 'get',
      path: '/v1/ab-report',
      operationId: 'getAbReport',
      tags: ['reports'],
      security,
      summary:
        'ML vs heuristic per arm (n, MAE, RMSE, R²) and paired on the same bookings, with a 95% interval',
      request: {
        query: z.object({
          days: queryNumber('days', (n) => n.int().min(1).max(365))
            .default(30)
            .openapi({ description: 'Window: the last days x 24 hours' }),
        }),
      },
      responses: answers(AbReportSchema, 'The comparison and its verdict'),
    }),
    async (c) => c.json(await reports.abReport({ days: c.req.valid('query').days }), 200),
  );

  app.openapi(
    createRoute({
      method: 'get',
      path: '/v1/monitoring/summary',
      operationId: 'getMonitoringSummary',
      tags: ['reports'],
      security,
      summary: 'Last 24 hours: volumes, ML share, fallbacks, weather defaults, accuracy per arm',
      responses: answers(MonitoringSummarySchema, 'Summary'),
    }),
    async (c) => c.json(await reports.summary(), 200),
  );

  app.openapi(
    createRoute({
      method: 'get',
      path: '/v1/monitoring/daily',
      operationId: 'getMonitoringDaily',
      tags: ['reports'],
      security,
      summary: 'Per UTC day: predictions, ML share, feedback, MAE per source',
      request: {
        query: z.object({
          days: queryNumber('days', (n) => n.int().min(1).max(90))
            .default(7)
            .openapi({ description: 'Days back' }),
        }),
      },
      responses: answers(z.object({ days: z.array(DailyRowSchema) }), 'Newest day first'),
    }),
    async (c) => c.json({ days: await reports.daily(c.req.valid('query').days) }, 200),
  );

  app.openapi(
    createRoute({
      method: 'get',
      path: '/v1/monitoring/predictions',
      operationId: 'getLatestPredictions',
      tags: ['reports'],
      security,
      summary: 'The latest stored predictions, with their actual delay when known',
      request: {
        query: z.object({
          limit: queryNumber('limit', (n) => n.int().min(1).max(500))
            .default(50)
            .openapi({ description: 'At most' }),
        }),
      },
      responses: answers(z.object({ predictions: z.array(StoredPredictionSchema) }), 'Newest first'),
    }),
    async (c) => c.json({ predictions: await reports.latest(c.req.valid('query').limit) }, 200),
  );

  app.openapi(
    createRoute({
      method: 'get',
      path: '/v1/monitoring/anomalies',
      operationId: 'getAnomalies',
      tags: ['reports'],
      security,
      summary: 'Predictions of the last 7 days whose absolute error exceeds threshold_mae minutes',
      request: {
        query: z.object({
          threshold_mae: queryNumber('threshold_mae', (n) => n.min(0).max(1440))
            .default(5)
            .openapi({ description: 'Absolute error above which a prediction is listed, minutes' }),
        }),
      },
      responses: answers(z.object({ anomalies: z.array(AnomalySchema) }), 'Newest first, 100 at most'),
    }),
    async (c) => c.json({ anomalies: await reports.anomalies(c.req.valid('query').threshold_mae) }, 200),
  );
  return app;
}
