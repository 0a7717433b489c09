import type { z } from 'zod';
import type { RejectionReason } from '../telemetry/service-metrics.js';

/** RFC 9457 problem details. `type` URIs are relative anchors into docs/api-errors.md. */
export interface Problem {
  type: string;
  title: string;
  status: number;
  detail?: string;
  errors?: { pointer: string; detail: string }[];
  [extension: string]: unknown;
}

/** Thrown by handlers to answer with a problem; the app's error handler renders and counts it. */
export class ProblemError extends Error {
  constructor(
    readonly problem: Problem,
    /** Bounded label for the rejected-requests metric. */
    readonly reason: RejectionReason,
    readonly headers: Record<string, string> = {},
  ) {
    super(problem.detail ?? problem.title);
    this.name = 'ProblemError';
  }
}

export const PROBLEM_CONTENT_TYPE = 'application/problem+json';

export function problemResponse(problem: Problem, headers: Record<string, string> = {}): Response {
  return new Response(JSON.stringify(problem), {
    status: problem.status,
    headers: { ...headers, 'content-type': PROBLEM_CONTENT_TYPE },
  });
}

/** JSON Pointer (RFC 6901) to the offending value, e.g. /bookings/3/pickup/lat. */
export function pointerOf(path: readonly PropertyKey[]): string {
  return `/${path.map((p) => String(p).replaceAll('~', '~0').replaceAll('/', '~1')).join('/')}`;
}

export function validationProblem(error: z.core.$ZodError): Problem {
  const errors = error.issues.map((issue) => ({ pointer: pointerOf(issue.path), detail: issue.message }));
  const items = [
    ...new Set(
      error.issues
        .filter((i) => i.path[0] === 'bookings' && typeof i.path[1] === 'number')
        .map((i) => i.path[1]),
    ),
  ];
  return {
    type: '/problems/validation',
    title: 'The request body is not valid',
    status: 400,
    detail:
      items.length > 0
        ? `Invalid booking(s) at index ${items.join(', ')}; nothing was predicted.`
        : `${errors.length} invalid field(s).`,
    errors,
  };
}
