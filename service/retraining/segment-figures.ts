import { SEGMENT_NAMES, type SegmentName, segmentsOf } from '../features/segments.js';

/** One scored booking: what happened, what was predicted, and the segments it belongs to. */
export interface ScoredBooking {
  actual: number;
  delay: number;
  low: number;
  high: number;
  segments: readonly SegmentName[];
}

export interface Figures {
  n: number;
  mae: number;
  /** Mean of predicted - actual: negative when the model predicts too little. */
  bias: number;
  coverage_80: number;
  /** Shares of bookings whose actual delay fell below the interval and above it. */
  below: number;
  above: number;
}

/**
 * The bar a model meets in every segment with enough holdout bookings to judge: 80% interval coverage within
 * 4 points (as overall) and a mean bias within 0.3 min. Fewer bookings are reported, not judged.
 */
export const SEGMENT_BAR = {
  minBookings: 400,
  coverage: [0.76, 0.84] as const,
  maxAbsBias: 0.3,
} as const;

const round = (x: number) => Math.round(x * 10_000) / 10_000;

export function figuresOf(rows: readonly Omit<ScoredBooking, 'segments'>[]): Figures {
  let absolute = 0;
  let signed = 0;
  let below = 0;
  let above = 0;
  for (const r of rows) {
    absolute += Math.abs(r.actual - r.delay);
    signed += r.delay - r.actual;
    if (r.actual < r.low) below += 1;
    else if (r.actual > r.high) above += 1;
  }
  const n = rows.length;
  const share = (x: number) => (n === 0 ? 0 : round(x / n));
  return {
    n,
    mae: share(absolute),
    bias: share(signed),
    coverage_80: share(n - below - above),
    below: share(below),
    above: share(above),
  };
}

/** Figures for the whole and for every segment, in SEGMENT_NAMES order (empty segments included, with n 0). */
export function segmentFigures(rows: readonly ScoredBooking[]) {
  return {
    all: figuresOf(rows),
    segments: Object.fromEntries(
      SEGMENT_NAMES.map((name) => [name, figuresOf(rows.filter((r) => r.segments.includes(name)))]),
    ) as Record<SegmentName, Figures>,
  };
}

export type SegmentReport = ReturnType<typeof segmentFigures>;

/** The segments of a feature vector: see features/segments.ts for the reference delay. */
export const segmentsOfRow = (vector: readonly number[], referenceDelay: number) =>
  segmentsOf({ vector, referenceDelay });

export interface SegmentCheck {
  segment: SegmentName;
  n: number;
  judged: boolean;
  coverage_80: number;
  bias: number;
  pass: boolean;
  /** Why it fails, in words; absent when it passes or is not judged. */
  reason?: string;
}

/** Each segment against SEGMENT_BAR: judged when it holds at least minBookings bookings. */
export function checkSegments(report: SegmentReport): SegmentCheck[] {
  return SEGMENT_NAMES.map((name) => {
    const f = report.segments[name];
    const judged = f.n >= SEGMENT_BAR.minBookings;
    const [lo, hi] = SEGMENT_BAR.coverage;
    const problems: string[] = [];
    if (judged && (f.coverage_80 < lo || f.coverage_80 > hi))
      problems.push(
        `80% coverage ${f.coverage_80} outside ${lo}..${hi} (below ${f.below}, above ${f.above})`,
      );
    if (judged && Math.abs(f.bias) > SEGMENT_BAR.maxAbsBias)
      problems.push(`mean bias ${f.bias} min beyond ±${SEGMENT_BAR.maxAbsBias}`);
    return {
      segment: name,
      n: f.n,
      judged,
      coverage_80: f.coverage_80,
      bias: f.bias,
      pass: problems.length === 0,
      ...(problems.length > 0 ? { reason: `${name} (n ${f.n}): ${problems.join('; ')}` } : {}),
    };
  });
}

/** Why a challenger is worse by segment: judged segments where it misses the bar and the champion meets it. */
export function segmentRegressions(champion: readonly SegmentCheck[], challenger: readonly SegmentCheck[]) {
  return challenger.filter((c, i) => c.judged && !c.pass && champion[i]?.pass).map((c) => c.reason as string);
}
