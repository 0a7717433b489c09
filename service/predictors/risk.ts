/**
 * Confidence and risk from a prediction's interval, the same rules for every predictor (docs/heuristic.md).
 * confidence: 1 / (1 + width / 10 min), so a 10-minute-wide 80% interval reads as 0.5.
 * risk_level: high when the delay is 15 min or more or the interval reaches 25 min; medium from 5 min
 * (the manual's critical MAE) or an interval reaching 12 min; low otherwise.
 */
export const RISK_RULES = {
  confidenceWidthScaleMinutes: 10,
  high: { delayAtLeast: 15, highAtLeast: 25 },
  medium: { delayAtLeast: 5, highAtLeast: 12 },
} as const;

export function confidenceOf(interval: { low: number; high: number }): number {
  const width = Math.max(interval.high - interval.low, 0);
  return Math.round(100 / (1 + width / RISK_RULES.confidenceWidthScaleMinutes)) / 100;
}

export function riskLevelOf(delay: number, interval: { high: number }): 'low' | 'medium' | 'high' {
  const { high, medium } = RISK_RULES;
  if (delay >= high.delayAtLeast || interval.high >= high.highAtLeast) return 'high';
  if (delay >= medium.delayAtLeast || interval.high >= medium.highAtLeast) return 'medium';
  return 'low';
}
