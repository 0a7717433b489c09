/**
 * The business figures the plan promises (delays anticipated, ETA buffer over-allocation, proactive reassignments,
 * cost), defined once for the feedback counters, the A/B report's SQL (service/reports/business-report.ts says the
 * same in SQL, and its tests check both agree) and the holdout measurement (models/business.ts).
 */

/** The plan's figures, set beside what is measured (models/README.md, "Business outcome"). */
export const PLAN_TARGETS = {
  /** Share of late bookings flagged in advance (the plan: 75-80%, against 0% without prediction). */
  anticipatedRatio: 0.75,
  /** Minutes of buffer reserved and not used, against the rules' buffer (the plan: -15% over-allocation). */
  bufferUnusedChange: -0.15,
  /** Proactive reassignments a day (the plan: about 25). */
  reassignmentsPerDay: 25,
  /** Cost of buffer minutes, against the rules' (the plan: -10%, from less over-allocation). */
  costChange: -0.1,
} as const;

/** LATE_THRESHOLD_MINUTES' default: a booking is late when its actual delay reaches it. */
export const DEFAULT_LATE_THRESHOLD_MINUTES = 10;

/** The business settings: LATE_THRESHOLD_MINUTES, COST_PER_DELAY_MINUTE (unset: no cost figure). */
export interface BusinessSettings {
  lateThresholdMinutes: number;
  costPerDelayMinute: number | undefined;
}

export const DEFAULT_BUSINESS_SETTINGS: BusinessSettings = {
  lateThresholdMinutes: DEFAULT_LATE_THRESHOLD_MINUTES,
  costPerDelayMinute: undefined,
};

export interface BookingOutcome {
  /** The actual delay reached the threshold. */
  late: boolean;
  /**
   * The predicted point delay reached the threshold: the number a dispatcher is shown and acts on. The interval's
   * high end would flag far more bookings (a wide interval reaches 10 minutes on a quiet trip) and reward a
   * predictor for being unsure.
   */
  flagged: boolean;
  /** Minutes of the buffer (the predicted delay, at least 0) the trip did not use: an early trip uses none. */
  bufferUnused: number;
  /** Minutes the trip ran past its buffer. */
  bufferShortfall: number;
}

/**
 * What one predicted delay meant for one booking, if dispatch reserves the prediction as the ETA buffer. The
 * buffer and the minutes used are both at least 0: a negative prediction reserves nothing, and a trip that arrives
 * early uses none of its buffer, so the unused minutes never exceed the minutes reserved.
 */
export function bookingOutcome(
  predicted: number,
  actual: number,
  lateThresholdMinutes: number,
): BookingOutcome {
  const buffer = Math.max(predicted, 0);
  const used = Math.max(actual, 0);
  return {
    late: actual >= lateThresholdMinutes,
    flagged: predicted >= lateThresholdMinutes,
    bufferUnused: Math.max(buffer - used, 0),
    bufferShortfall: Math.max(used - buffer, 0),
  };
}

/** Sums over bookings, from which every figure follows. */
export interface BusinessSums {
  n: number;
  late: number;
  flagged: number;
  anticipated: number;
  false_alarms: number;
  buffer_unused_minutes: number;
  buffer_shortfall_minutes: number;
}

export const NO_BOOKINGS: BusinessSums = {
  n: 0,
  late: 0,
  flagged: 0,
  anticipated: 0,
  false_alarms: 0,
  buffer_unused_minutes: 0,
  buffer_shortfall_minutes: 0,
};

export function addOutcome(sums: BusinessSums, o: BookingOutcome): BusinessSums {
  return {
    n: sums.n + 1,
    late: sums.late + Number(o.late),
    flagged: sums.flagged + Number(o.flagged),
    anticipated: sums.anticipated + Number(o.late && o.flagged),
    false_alarms: sums.false_alarms + Number(o.flagged && !o.late),
    buffer_unused_minutes: sums.buffer_unused_minutes + o.bufferUnused,
    buffer_shortfall_minutes: sums.buffer_shortfall_minutes + o.bufferShortfall,
  };
}

const round4 = (x: number) => Math.round(x * 10_000) / 10_000;
const ratio = (part: number, whole: number) => (whole > 0 ? round4(part / whole) : null);

/** The figures of one arm: shares and means are null where their denominator is 0; cost null without a price. */
export function businessFigures(s: BusinessSums, costPerDelayMinute: number | undefined) {
  return {
    ...s,
    buffer_unused_minutes: round4(s.buffer_unused_minutes),
    buffer_shortfall_minutes: round4(s.buffer_shortfall_minutes),
    anticipated_ratio: ratio(s.anticipated, s.late),
    false_alarm_ratio: ratio(s.false_alarms, s.flagged),
    buffer_unused_minutes_mean: ratio(s.buffer_unused_minutes, s.n),
    buffer_shortfall_minutes_mean: ratio(s.buffer_shortfall_minutes, s.n),
    cost:
      costPerDelayMinute === undefined
        ? null
        : round4((s.buffer_unused_minutes + s.buffer_shortfall_minutes) * costPerDelayMinute),
  };
}
export type BusinessFigures = ReturnType<typeof businessFigures>;

/** Relative change of ML's figure against the rules' on the same bookings (-0.15: 15% less); null from 0. */
export const changeAgainst = (ml: number, rules: number) => (rules > 0 ? round4(ml / rules - 1) : null);

/** ML against the rules' answer on the same bookings: what the plan's relative targets are judged on. */
export function mlAgainstRules(ml: BusinessSums, rules: BusinessSums) {
  return {
    buffer_unused_change: changeAgainst(ml.buffer_unused_minutes, rules.buffer_unused_minutes),
    buffer_shortfall_change: changeAgainst(ml.buffer_shortfall_minutes, rules.buffer_shortfall_minutes),
    /** The cost's change whatever the price: the buffer minutes, unused and missing, that cost turns into money. */
    buffer_minutes_change: changeAgainst(
      ml.buffer_unused_minutes + ml.buffer_shortfall_minutes,
      rules.buffer_unused_minutes + rules.buffer_shortfall_minutes,
    ),
  };
}
