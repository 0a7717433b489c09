/** The flags the service reads, and the meaning it gives them (ADR 0002). */
export const FLAG_KEYS = {
  model: 'delay-model',
  fallbackOnError: 'ml-fallback-on-error',
  weatherEnrichment: 'weather-enrichment',
} as const;

/** The delay-model variant that means "the rules, no model". Every other variant is a model version. */
export const HEURISTIC_VARIANT = 'heuristic';
