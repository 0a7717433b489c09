import { closeSync, fsyncSync, openSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import {
  FLAG_KEYS,
  FlagConfigError,
  HEURISTIC_VARIANT,
  parseFlagConfig,
  type RolloutState,
} from './flag-config.js';

interface FlagDocument {
  flags: Record<
    string,
    { variants: Record<string, string>; targeting?: Record<string, unknown>; defaultVariant: string }
  >;
}

export interface FlagChange {
  previous: RolloutState;
  next: RolloutState;
  changed: boolean;
}

/** The ML variant of the delay-model flag: the one the split names first (design: ML listed first). */
export function currentModelVersion(rollout: RolloutState): string | null {
  return (
    rollout.split?.find((s) => s.variant !== HEURISTIC_VARIANT)?.variant ?? rollout.modelVariants[0] ?? null
  );
}

/**
 * Rewrites the flag file through `edit`, refusing any result that flagd or this service would refuse, and
 * replacing the file atomically: a temporary file in the same folder, fsynced, renamed over the original,
 * and the folder fsynced, so a reader (flagd, the service's watcher) sees the old file or the new one.
 */
export function rewriteFlags(
  file: string,
  edit: (doc: FlagDocument, current: RolloutState) => void,
): FlagChange {
  const text = readFileSync(file, 'utf8');
  const previous = parseFlagConfig(text);
  const doc = JSON.parse(text) as FlagDocument;
  edit(doc, previous);
  const nextText = `${JSON.stringify(doc, null, 2)}\n`;
  const next = parseFlagConfig(nextText);
  if (JSON.stringify(JSON.parse(text)) === JSON.stringify(doc)) {
    return { previous, next, changed: false };
  }
  const tmp = join(dirname(file), `.${basename(file)}.${process.pid}.tmp`);
  writeFileSync(tmp, nextText);
  const fd = openSync(tmp, 'r');
  fsyncSync(fd);
  closeSync(fd);
  renameSync(tmp, file);
  const dir = openSync(dirname(file), 'r');
  fsyncSync(dir);
  closeSync(dir);
  return { previous, next, changed: true };
}

/** Sets the ML share of the delay-model flag to `percentage` (0..100), keeping the model listed first. */
export function setMlPercentage(file: string, percentage: number): FlagChange {
  if (!Number.isFinite(percentage) || percentage < 0 || percentage > 100) {
    throw new FlagConfigError(`the ML percentage must be between 0 and 100 (got ${percentage})`);
  }
  return rewriteFlags(file, (doc, current) => {
    const version = currentModelVersion(current);
    if (!version) throw new FlagConfigError(`flag '${FLAG_KEYS.model}' declares no model variant`);
    const flag = doc.flags[FLAG_KEYS.model] as FlagDocument['flags'][string];
    flag.targeting = {
      fractional: [
        [version, percentage],
        [HEURISTIC_VARIANT, 100 - percentage],
      ],
    };
  });
}

/** Serves `version` in place of the current model, at the same percentage. */
export function setModelVersion(file: string, version: string): FlagChange {
  return rewriteFlags(file, (doc, current) => {
    const percentage = current.mlPercentage ?? 0;
    const flag = doc.flags[FLAG_KEYS.model] as FlagDocument['flags'][string];
    flag.variants = { [HEURISTIC_VARIANT]: HEURISTIC_VARIANT, [version]: version };
    flag.defaultVariant = HEURISTIC_VARIANT;
    flag.targeting = {
      fractional: [
        [version, percentage],
        [HEURISTIC_VARIANT, 100 - percentage],
      ],
    };
  });
}

/** The rollout steps `promote` walks through. */
export const ROLLOUT_STEPS = [10, 25, 50, 100] as const;

export function nextStep(percentage: number): number | null {
  return ROLLOUT_STEPS.find((step) => step > percentage) ?? null;
}
