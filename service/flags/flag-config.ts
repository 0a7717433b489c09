import { MemoryStorage } from '@openfeature/flagd-core';
import { FLAG_KEYS, HEURISTIC_VARIANT } from '../domain/flags.js';

export interface RolloutState {
  /** Share of bookings sent to ML, 0..100; null when the targeting is not a plain fractional split. */
  mlPercentage: number | null;
  /** Model versions that receive traffic (weight > 0), in flag order. */
  activeModelVersions: string[];
  /** Every model variant the flag declares, with or without traffic. */
  modelVariants: string[];
  split: { variant: string; weight: number }[] | null;
  state: 'ENABLED' | 'DISABLED';
  defaultVariant: string;
}

export class FlagConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'FlagConfigError';
  }
}

interface RawFlag {
  state: 'ENABLED' | 'DISABLED';
  defaultVariant: string;
  variants: Record<string, unknown>;
  targeting?: Record<string, unknown>;
}

const silentLogger = { error() {}, warn() {}, info() {}, debug() {} };

/**
 * Validates a flag file as strictly as flagd itself (flagd-core with schema validation), then checks what
 * this service needs of it, and reads the rollout out of the delay-model flag. Throws FlagConfigError.
 */
export function parseFlagConfig(text: string): RolloutState {
  let document: { flags?: Record<string, RawFlag> };
  try {
    document = JSON.parse(text);
  } catch (err) {
    throw new FlagConfigError(`not valid JSON: ${(err as Error).message}`);
  }
  try {
    new MemoryStorage(silentLogger).setConfigurations(text, true);
  } catch (err) {
    throw new FlagConfigError(`rejected by flagd's schema: ${summarizeFlagdError(err as Error)}`);
  }
  const flags = document.flags ?? {};
  for (const key of Object.values(FLAG_KEYS)) {
    if (!flags[key]) throw new FlagConfigError(`flag '${key}' is missing`);
  }
  for (const key of [FLAG_KEYS.fallbackOnError, FLAG_KEYS.weatherEnrichment]) {
    const variants = Object.values((flags[key] as RawFlag).variants);
    if (!variants.every((v) => typeof v === 'boolean')) {
      throw new FlagConfigError(`flag '${key}' must have boolean variants`);
    }
  }
  return rolloutOf(flags[FLAG_KEYS.model] as RawFlag);
}

function rolloutOf(flag: RawFlag): RolloutState {
  const key = FLAG_KEYS.model;
  const variants = Object.entries(flag.variants);
  if (!(HEURISTIC_VARIANT in flag.variants)) {
    throw new FlagConfigError(`flag '${key}' needs a '${HEURISTIC_VARIANT}' variant`);
  }
  for (const [name, value] of variants) {
    if (value !== name) {
      throw new FlagConfigError(
        `flag '${key}': variant '${name}' must have the value '${name}' (a model version)`,
      );
    }
  }
  const modelVariants = variants.map(([name]) => name).filter((name) => name !== HEURISTIC_VARIANT);
  const split = fractionalSplit(flag.targeting);
  if (split) {
    for (const { variant } of split) {
      if (!(variant in flag.variants)) {
        throw new FlagConfigError(
          `flag '${key}': fractional names '${variant}', which is not one of its variants`,
        );
      }
    }
  }

  if (flag.state !== 'DISABLED') refuseMisreadRouting(flag, split);

  let mlPercentage: number | null = null;
  let activeModelVersions: string[] = [];
  if (flag.state === 'DISABLED') {
    mlPercentage = 0;
  } else if (split) {
    const total = split.reduce((sum, s) => sum + s.weight, 0);
    const ml = split.filter((s) => s.variant !== HEURISTIC_VARIANT && s.weight > 0);
    mlPercentage = Math.round((ml.reduce((sum, s) => sum + s.weight, 0) / total) * 10_000) / 100;
    activeModelVersions = ml.map((s) => s.variant);
  } else if (!flag.targeting || Object.keys(flag.targeting).length === 0) {
    const onModel = flag.defaultVariant !== HEURISTIC_VARIANT;
    mlPercentage = onModel ? 100 : 0;
    activeModelVersions = onModel ? [flag.defaultVariant] : [];
  } else {
    activeModelVersions = modelVariants;
  }
  return {
    mlPercentage,
    activeModelVersions,
    modelVariants,
    split,
    state: flag.state,
    defaultVariant: flag.defaultVariant,
  };
}

/** flagd-core sends every booking to the default variant when a split's weights add up to more than this. */
const MAX_FRACTIONAL_TOTAL_WEIGHT = 2 ** 31 - 1;

/**
 * Refuses the delay-model shapes flagd-core loads but routes otherwise than their weights read: a split whose
 * weights add up to 0 or past 2^31 - 1 (flagd-core then sends every booking to the default variant), a split
 * bucketed by an expression instead of the booking id, a flag with neither targeting nor a default variant
 * (every booking gets the coded default, the heuristic). So for every configuration accepted, the share
 * reported (`/v1/flags/status`, `delay_rollout_ml_percentage`, `rollout status`) is the share routed; targeting
 * that is not a plain split is reported as an unknown share (null), never as a figure. Refused rather than
 * reported as flagd routes them: a 0/0 split is a mistake, not a wish for 100% ML.
 */
function refuseMisreadRouting(flag: RawFlag, split: { weight: number }[] | null) {
  const refuse = (reason: string) => {
    throw new FlagConfigError(`flag '${FLAG_KEYS.model}': ${reason}`);
  };
  const targeting = (flag.targeting ?? {}) as { fractional?: unknown[] };
  if (Object.keys(targeting).length === 0 && !flag.defaultVariant) {
    refuse('no targeting and no default variant: flagd would answer every booking with the heuristic');
  }
  if (!split) return;
  if (targeting.fractional?.some((bucket) => !Array.isArray(bucket))) {
    refuse('the fractional split must bucket by the booking id, not by an expression');
  }
  const total = split.reduce((sum, s) => sum + s.weight, 0);
  if (total === 0 || total > MAX_FRACTIONAL_TOTAL_WEIGHT) {
    refuse(
      `the fractional weights add up to ${total}, outside 1..${MAX_FRACTIONAL_TOTAL_WEIGHT}: flagd would send every booking to the default variant`,
    );
  }
}

/** The weights of a targeting rule that is exactly `{"fractional": [...]}`; null for anything else. */
function fractionalSplit(targeting: Record<string, unknown> | undefined) {
  if (!targeting || Object.keys(targeting).length !== 1 || !Array.isArray(targeting.fractional)) return null;
  const buckets = targeting.fractional.filter((entry): entry is [string, number] => Array.isArray(entry));
  if (buckets.some((b) => typeof b[0] !== 'string' || (b.length > 1 && typeof b[1] !== 'number')))
    return null;
  // flagd gives a bucket without a weight the weight 1.
  return buckets.map((b) => ({ variant: b[0], weight: b.length > 1 ? (b[1] as number) : 1 }));
}

function summarizeFlagdError(err: Error): string {
  const match = /: (\[[\s\S]*\])$/.exec(err.message);
  if (!match?.[1]) return err.message;
  try {
    const details = JSON.parse(match[1]) as { instancePath: string; message: string }[];
    return details
      .slice(0, 5)
      .map((d) => `${d.instancePath || '/'} ${d.message}`)
      .join('; ');
  } catch {
    return err.message;
  }
}
