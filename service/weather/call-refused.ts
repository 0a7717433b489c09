/**
 * Calls refused before reaching the API, with why: the budget, a rejected key, a 429, an open circuit, or
 * another replica's call for the same cell that did not land in time.
 */
export class CallRefused extends Error {
  constructor(readonly reason: 'budget' | 'auth' | 'rate_limited' | 'circuit_open' | 'lock_wait') {
    super(`weather call refused: ${reason}`);
  }
}
