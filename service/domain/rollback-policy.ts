/**
 * The rollback policy's numbers, in one place (docs/adr/0007-rollback-policy.md): the alert rules in
 * prometheus/rules/alerts.yml, the auto-promoter's health checks and `npm run drift` use these values, and
 * prometheus/rules.test.ts fails when a rule says otherwise. Windows are PromQL durations.
 */
export const THRESHOLDS = {
  /** The operations manual's MAE target (minutes): a ticket; a promotion reports it and is judged against the rules. */
  maeTarget: 2.5,
  /** The manual's critical MAE (minutes): rolls back only together with losing to the rules. */
  maeCritical: 5,
  /** Evidence that ML is worse than its shadow heuristic on the same bookings: mean paired difference / SE. */
  pairedZ: 3,
  /** Severe break: short window to react, the reset window shows it still happening. */
  pairedFast: { window: '5m', resetWindow: '1m', minSamples: 30 },
  /** Sustained loss: the long window gives the evidence, the shorter one that it goes on. */
  pairedSlow: { window: '1h', resetWindow: '10m', minSamples: 200, for: '5m' },
  /**
   * Label-free: mean |ML - shadow heuristic - the card's baseline for the moment| (minutes). The healthy gap moves
   * with the hour and the weather (1 min at lunchtime, 6 in a wet morning rush); its departure from the card's
   * baseline for the same hour of the week, month and weather does not (0.56 on the card's holdout).
   */
  shadowDeparture: { minutes: 3, window: '5m', resetWindow: '1m', minSamples: 50 },
  /** Share of ML-assigned bookings answered by the heuristic (any fallback reason). */
  fallbackRatio: { long: 0.1, short: 0.2, window: '5m', resetWindow: '1m', minSamples: 20, for: '15s' },
  /**
   * The product card's latency figure (seconds): the latency SLO's bound (slo/prediction-latency.yaml, 99% of single
   * predictions within it), DelayPredictionLatencyHigh's p95 (info) and a promotion's bar.
   */
  latencyP95: 0.15,
  /** p95 the ML path adds over the heuristic path on single predictions (seconds): the model's own cost. */
  mlAddedLatencyP95: { seconds: 0.1, minRate: 0.1, for: '2m' },
  /**
   * PSI of a booking feature over 5 minutes against the serving model's training bins for the same hours of the
   * week: drift worth a ticket, and severe drift (a rollback when the feature matched within `fittedWithin`).
   */
  psi: {
    drift: 0.1,
    driftFor: '5m',
    minObservations: 500,
    severe: 1,
    severeFor: '10m',
    /** Sampling noise stays far below PSI 1 with 200 observations: severe drift is judged at night too. */
    severeMinObservations: 200,
    fittedWithin: '1d',
  },
} as const;

/** Each rollback alert and the signal it names (in its labels and in the audit row of the rollback). */
export const ROLLBACK_SIGNALS = {
  DelayModelLosingToRulesFast: 'feedback',
  DelayModelLosingToRules: 'feedback',
  DelayModelFarFromRules: 'label_free',
  DelayMlErrorRatioHigh: 'errors',
  DelayModelLatencyHigh: 'latency',
  DelayFeatureDriftSevere: 'drift',
} as const;

export type RollbackAlert = keyof typeof ROLLBACK_SIGNALS;

/**
 * What a rollout step shows before the promoter (service/rollout/auto-promoter.ts) takes the next one, judged as a
 * rollback judges it: over the last `window`, each model version the flag serves is at least as good as the rules
 * on the same bookings (the paired difference's mean, ML's |error| minus the shadow heuristic's, at most
 * `pairedMeanMinutes`: the rollback rules call a model losing above 0) on at least `minSamples` scored ML bookings
 * (the slow paired rule's guard, and AUTO_PROMOTE_MIN_SAMPLES' floor); no alert with one of `blockingAlerts`' labels
 * fires for the deployment; the fallback ratio and p95 stay under the rollback's and the latency warning's bars
 * over the last `healthWindow`. The absolute MAE is reported, not a bar: a storm raises both arms' errors.
 */
export const PROMOTION = {
  window: '24h',
  pairedMeanMinutes: 0,
  minSamples: THRESHOLDS.pairedSlow.minSamples,
  fallbackRatio: THRESHOLDS.fallbackRatio.long,
  latencyP95: THRESHOLDS.latencyP95,
  healthWindow: '1h',
  /** An alert carrying any one of these labels holds the step while it fires: it pages, or it rolls back. */
  blockingAlerts: [{ severity: 'page' }, { rollback: 'true' }],
} as const;
