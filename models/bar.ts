import type { SegmentCheck } from '../service/retraining/segment-figures.js';

/** The card's overall bar as the trainer writes it: each check's value, limit and verdict. */
export type CardBar = Record<string, { value: number | null; limit: number | number[]; pass: boolean }>;

/** Why a model is refused, one line per missed check: the card's overall bar, then the judged segments. */
export function refusals(bar: CardBar, checks: readonly SegmentCheck[]): string[] {
  const overall = Object.entries(bar)
    .filter(([, check]) => !check.pass)
    .map(([name, check]) => `${name}: ${check.value} (limit ${JSON.stringify(check.limit)})`);
  const segments = checks.filter((c) => !c.pass).map((c) => c.reason as string);
  return [...overall, ...segments];
}
