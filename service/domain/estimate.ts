/** What a predictor answers for one booking, before it is dressed as the API's prediction. */

export interface ContributingFactor {
  factor: string;
  minutes: number;
  /** The feature's value, when the factor is one feature (ML contributions). */
  value?: number;
  label: string;
}

export interface PointEstimate {
  delay_minutes: number;
  interval: { low: number; high: number; level: number };
  contributing_factors: ContributingFactor[];
}

/**
 * The factor that brings the contributions back to the served delay when a predictor's sum is below 0 and the
 * delay is floored there: its minutes are what the floor added.
 */
export const FLOOR_FACTOR = 'floor_at_zero';

export function floorFactor(minutes: number): ContributingFactor {
  return { factor: FLOOR_FACTOR, minutes, label: `no delay below 0: +${minutes.toFixed(1)} min` };
}

/** Why an ML-assigned booking was answered by the heuristic (rollback_latch: the flag named a model, the latch held it). */
export const FALLBACK_REASONS = [
  'model_unavailable',
  'model_error',
  'model_timeout',
  'flag_error',
  'rollback_latch',
] as const;
export type FallbackReason = (typeof FALLBACK_REASONS)[number];
