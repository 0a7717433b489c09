import type { ValidationTargets } from 'hono';
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

/** The title names where the bad input is: a client fixing a query parameter is not sent to its body. */
const VALIDATION_TITLES: Record<keyof ValidationTargets, string> = {
  json: 'The request body is not valid',
  form: 'The request body is not valid',
  query: 'The query parameters are not valid',
  param: 'The path parameters are not valid',
  header: 'The request headers are not valid',
  cookie: 'The request cookies are not valid',
};

/** A 400 naming every bad field of the part of the request `where` says (the body by default). */
export function validationProblem(error: z.core.$ZodError, where: keyof ValidationTargets = 'json'): Problem {
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
    title: VALIDATION_TITLES[where],
    status: 400,
    detail:
      items.length > 0
        ? `Invalid booking(s) at index ${items.join(', ')}; nothing was predicted.`
        : `${errors.length} invalid field(s).`,
    errors,
  };
}
