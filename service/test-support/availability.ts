/**
 * Whether a test's outside part (a binary, a Postgres cluster) is here: `missing` names what is absent, or is
 * null. Absent, the test is skipped with the reason printed; under CI=true the absence fails instead.
 */
export function presentOrSkip(missing: string | null): boolean {
  if (missing === null) return true;
  if (process.env.CI === 'true') throw new Error(`required under CI=true: ${missing}`);
  console.warn(`skipping: ${missing}`);
  return false;
}
