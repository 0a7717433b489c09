import type { WeatherRefusalReason } from '../telemetry/service-metrics.js';

/**
 * Calls refused before reaching the API, with why: the budget, a rejected key, a 429, an open circuit, or
 * another replica's call for the same cell that did not land in time.
 */
export class CallRefused extends Error {
  constructor(readonly reason: Exclude<WeatherRefusalReason, 'timeout'>) {
    super(`weather call refused: ${reason}`);
  }
}
