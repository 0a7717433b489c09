import {
  addOutcome,
  type BusinessSettings,
  type BusinessSums,
  bookingOutcome,
  businessFigures,
  mlAgainstRules,
  NO_BOOKINGS,
} from '../service/domain/business.js';
import type { PointEstimate } from '../service/domain/estimate.js';
import { bookingFeatures } from '../service/features/booking-features.js';
import { loadOnnxModel } from '../service/models/onnx-model.js';
import { heuristicEstimate } from '../service/predictors/heuristic.js';
import { riskLevelOf } from '../service/predictors/risk.js';
import type { RawBooking } from './generator.js';
import { vectorsOf } from './holdout.js';

interface Arm {
  sums: BusinessSums;
  /** Bookings answered high risk (service/predictors/risk.ts): the proactive reassignment candidates. */
  highRisk: number;
}

function tally(
  rows: readonly RawBooking[],
  answer: (i: number) => { delay: number; high: number },
  lateThresholdMinutes: number,
): Arm {
  let sums = NO_BOOKINGS;
  let highRisk = 0;
  rows.forEach((r, i) => {
    const { delay, high } = answer(i);
    sums = addOutcome(sums, bookingOutcome(delay, r.actual_delay_minutes, lateThresholdMinutes));
    if (riskLevelOf(delay, { high }) === 'high') highRisk += 1;
  });
  return { sums, highRisk };
}

/**
 * The business figures of a model version and of the rules on the same generated holdout bookings, through the
 * service's own ONNX inference and heuristic, beside the generator's oracle (its true median and 80% interval):
 * what no predictor of the median can beat. `days`: how many days the bookings spread over (reassignments a day).
 */
export async function businessOnHoldout(
  dir: string,
  version: string,
  rows: readonly RawBooking[],
  { lateThresholdMinutes, costPerDelayMinute }: BusinessSettings,
  days: number,
) {
  const model = await loadOnnxModel(dir, version);
  const vectors = vectorsOf(rows);
  const scored = await model.score(Float32Array.from(vectors.flat()), vectors.length);
  const rules = rows.map((r) => heuristicEstimate(bookingFeatures(r.booking, r.weather)));
  const of = (e: PointEstimate) => ({ delay: e.delay_minutes, high: e.interval.high });
  const arms = {
    ml: tally(rows, (i) => of(scored[i] as PointEstimate), lateThresholdMinutes),
    rules: tally(rows, (i) => of(rules[i] as PointEstimate), lateThresholdMinutes),
    oracle: tally(
      rows,
      (i) => ({
        delay: (rows[i] as RawBooking).median_delay_minutes,
        high: (rows[i] as RawBooking).oracle_interval.high,
      }),
      lateThresholdMinutes,
    ),
  };
  const figures = (arm: Arm) => ({
    ...businessFigures(arm.sums, costPerDelayMinute),
    reassignment_candidates: arm.highRisk,
    reassignment_candidates_per_day: Math.round((arm.highRisk / days) * 10) / 10,
    reassignment_candidates_per_1000_bookings: Math.round((arm.highRisk / rows.length) * 10_000) / 10,
  });
  return {
    bookings: rows.length,
    days,
    bookings_per_day: Math.round((rows.length / days) * 10) / 10,
    late_threshold_minutes: lateThresholdMinutes,
    cost_per_delay_minute: costPerDelayMinute ?? null,
    ml: figures(arms.ml),
    rules: figures(arms.rules),
    oracle: figures(arms.oracle),
    ml_against_rules: mlAgainstRules(arms.ml.sums, arms.rules.sums),
  };
}
export type HoldoutBusiness = Awaited<ReturnType<typeof businessOnHoldout>>;
