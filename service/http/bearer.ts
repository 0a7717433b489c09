import { createHash, timingSafeEqual } from 'node:crypto';

/** Compares `Authorization: Bearer <token>` with the expected token in constant time (digests of equal length). */
export function bearerTokenMatches(header: string | undefined, expected: string): boolean {
  const match = /^Bearer\s+(.+)$/i.exec(header ?? '');
  if (!match?.[1]) return false;
  const digest = (value: string) => createHash('sha256').update(value).digest();
  return timingSafeEqual(digest(match[1].trim()), digest(expected));
}
