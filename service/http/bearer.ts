import { createHash, timingSafeEqual } from 'node:crypto';
import { createMiddleware } from 'hono/factory';
import { ProblemError } from './problem.js';

/** Compares `Authorization: Bearer <token>` with the expected token in constant time (digests of equal length). */
export function bearerTokenMatches(header: string | undefined, expected: string): boolean {
  const match = /^Bearer\s+(.+)$/i.exec(header ?? '');
  if (!match?.[1]) return false;
  const digest = (value: string) => createHash('sha256').update(value).digest();
  return timingSafeEqual(digest(match[1].trim()), digest(expected));
}

/**
 * Refuses a request without the bearer token before its body is read or validated: 401 problem with
 * `WWW-Authenticate: Bearer`, counted as an `unauthorized` rejection.
 */
export function requireBearer(token: string) {
  return createMiddleware(async (c, next) => {
    if (!bearerTokenMatches(c.req.header('authorization'), token)) {
      throw new ProblemError(
        {
          type: '/problems/unauthorized',
          title: 'Unauthorized',
          status: 401,
          detail: 'A valid bearer token is required.',
        },
        'unauthorized',
        { 'www-authenticate': 'Bearer' },
      );
    }
    await next();
  });
}
