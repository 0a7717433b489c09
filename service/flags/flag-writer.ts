import { FLAG_KEYS, HEURISTIC_VARIANT } from '../domain/flags.js';
import { FlagConfigError, parseFlagConfig, type RolloutState } from './flag-config.js';
import { readFlagFileSync, replaceFile } from './flag-file.js';

export interface FlagDocument {
  flags: Record<
    string,
    { variants: Record<string, string>; targeting?: Record<string, unknown>; defaultVariant: string }
  >;
}

/**
 * What a rollback writes from when the file cannot be read or is invalid: the last configuration the service
 * accepted, which is the one it routes on. `onUse` hears why the file was not used.
 */
export interface FallbackBase {
  text: () => string | null;
  onUse: (reason: string) => void;
  /**
   * When the file cannot be written (a folder in its place, a read-only mount): applies the change to this
   * process's routing alone (true when it could), so the rollback still stops the model here;
   * `rewriteFlags` then throws `FlagNotWrittenError`, because the other readers of the file were not reached.
   */
  routeHere?: (text: string, reason: string) => boolean;
}

/** The change was applied to this process only: the flag file could not be written. */
export class FlagNotWrittenError extends Error {
  constructor(
    readonly file: string,
    readonly change: FlagChange,
    cause: Error,
  ) {
    super(`cannot write ${file}: ${cause.message}`);
    this.name = 'FlagNotWrittenError';
  }
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
 * What a change judged the flag by (the promoter: the share and versions its health queries measured). A change
 * made on `expecting` it is a compare-and-set: refused with `RolloutChangedError` when the flag holds another.
 */
export type JudgedRollout = Pick<RolloutState, 'mlPercentage' | 'activeModelVersions' | 'split'>;

/** The flag no longer holds the rollout a change was judged on: nothing was written. */
export class RolloutChangedError extends Error {
  constructor(
    readonly judged: JudgedRollout,
    readonly found: JudgedRollout,
  ) {
    super(
      `the flag changed since the judgement: ${describeRollout(judged)} judged, ${describeRollout(found)} found`,
    );
    this.name = 'RolloutChangedError';
  }
}

const describeRollout = (r: JudgedRollout) =>
  r.split
    ? r.split.map((s) => `${s.variant} ${s.weight}`).join(', ')
    : `${r.mlPercentage ?? 'unknown'}% ML (${r.activeModelVersions.join(', ') || 'no model'})`;

/** A change to the flag document, given the rollout it holds now. */
export type FlagEdit = (doc: FlagDocument, current: RolloutState) => void;

/** `edit`, made only while the flag holds the rollout `judged`: checked on what the store holds at the write. */
export function expecting(judged: JudgedRollout, edit: FlagEdit): FlagEdit {
  const key = (r: JudgedRollout) => JSON.stringify([r.mlPercentage, r.activeModelVersions, r.split]);
  return (doc, current) => {
    if (key(current) !== key(judged)) throw new RolloutChangedError(judged, current);
    edit(doc, current);
  };
}

/** Applies `edit` to a flag document's text, refusing any result that flagd or this service would refuse. */
export function editFlagText(text: string, edit: FlagEdit) {
  const previous = parseFlagConfig(text);
  const doc = JSON.parse(text) as FlagDocument;
  edit(doc, previous);
  const nextText = `${JSON.stringify(doc, null, 2)}\n`;
  const next = parseFlagConfig(nextText);
  const change: FlagChange = {
    previous,
    next,
    changed: JSON.stringify(JSON.parse(text)) !== JSON.stringify(doc),
  };
  return { change, doc, nextText };
}

/**
 * Rewrites the flag file through `edit`, refusing any result that flagd or this service would refuse, and
 * replacing the file atomically (`replaceFile`), so a reader (flagd, the service's watcher) sees the old file
 * or the new one.
 */
export function rewriteFlags(file: string, edit: FlagEdit, fallback?: FallbackBase): FlagChange {
  let text: string;
  let fileUnusable = false;
  try {
    text = readFlagFileSync(file);
    parseFlagConfig(text);
  } catch (err) {
    const base = fallback?.text();
    if (!base) throw err;
    fallback?.onUse((err as Error).message);
    text = base;
    fileUnusable = true;
  }
  const { change, nextText } = editFlagText(text, edit);
  // A broken file is written even when the configuration is unchanged: the other readers need a valid one.
  if (!change.changed && !fileUnusable) return change;
  try {
    replaceFile(file, nextText);
  } catch (err) {
    if (!fallback?.routeHere?.(nextText, (err as Error).message)) throw err;
    throw new FlagNotWrittenError(file, change, err as Error);
  }
  return change;
}

/**
 * Sets the ML share of the delay-model flag to `percentage` (0..100). With a canary, the models keep their
 * proportions (whole percents, the first model takes the rounding); at 0 every model loses its traffic and a
 * later enable serves the model listed first only.
 */
export function setMlPercentage(file: string, percentage: number, fallback?: FallbackBase): FlagChange {
  return rewriteFlags(file, mlPercentageEdit(percentage), fallback);
}

export function mlPercentageEdit(percentage: number): FlagEdit {
  if (!Number.isFinite(percentage) || percentage < 0 || percentage > 100) {
    throw new FlagConfigError(`the ML percentage must be between 0 and 100 (got ${percentage})`);
  }
  return (doc, current) => {
    const version = currentModelVersion(current);
    // A flag of the heuristic alone routes nothing to ML: at 0% there is nothing to change.
    if (!version && percentage === 0) return;
    if (!version) throw new FlagConfigError(`flag '${FLAG_KEYS.model}' declares no model variant`);
    const serving = (current.split ?? []).filter((s) => s.variant !== HEURISTIC_VARIANT && s.weight > 0);
    const total = serving.reduce((sum, s) => sum + s.weight, 0);
    const shares: [string, number][] =
      serving.length > 1 && percentage > 0
        ? serving.map((s) => [s.variant, Math.floor((percentage * s.weight) / total)])
        : [[version, percentage]];
    const first = shares[0] as [string, number];
    first[1] += percentage - shares.reduce((sum, s) => sum + s[1], 0);
    const flag = doc.flags[FLAG_KEYS.model] as FlagDocument['flags'][string];
    flag.targeting = { fractional: [...shares, [HEURISTIC_VARIANT, 100 - percentage]] };
  };
}

/**
 * Adds `version` as a canary beside the serving model: it takes `percentage` points of that model's share, so
 * the heuristic arm and the total ML share stay as they are. `set-model` later makes it the only model.
 */
export function addCanary(file: string, version: string, percentage: number): FlagChange {
  return rewriteFlags(file, canaryEdit(version, percentage));
}

export function canaryEdit(version: string, percentage: number): FlagEdit {
  if (!Number.isInteger(percentage) || percentage < 1 || percentage > 100) {
    throw new FlagConfigError(
      `the canary percentage must be a whole number from 1 to 100 (got ${percentage})`,
    );
  }
  return (doc, current) => {
    const champion = currentModelVersion(current);
    if (version === HEURISTIC_VARIANT) throw new FlagConfigError('the heuristic cannot be a canary');
    if (!champion || champion === version) {
      throw new FlagConfigError(
        `a canary needs another model serving first (the flag serves ${champion ?? 'none'})`,
      );
    }
    const weightOf = (variant: string) => current.split?.find((s) => s.variant === variant)?.weight ?? 0;
    const championShare = weightOf(champion);
    const otherModels = current.modelVariants.filter(
      (v) => v !== champion && v !== version && weightOf(v) > 0,
    );
    if (otherModels.length > 0) {
      throw new FlagConfigError(
        `${otherModels.join(', ')} already takes traffic beside ${champion}; one canary at a time`,
      );
    }
    const canaryShare = weightOf(version) + percentage;
    // The champion keeps some traffic: a canary is a comparison, and `set-model` is the way to replace it.
    if (championShare <= percentage) {
      throw new FlagConfigError(
        `${champion} serves ${championShare}%: a canary of ${percentage}% must come out of it and leave it some (enable more first)`,
      );
    }
    const flag = doc.flags[FLAG_KEYS.model] as FlagDocument['flags'][string];
    flag.variants = { ...flag.variants, [version]: version };
    flag.targeting = {
      fractional: [
        [champion, championShare - percentage],
        [version, canaryShare],
        [HEURISTIC_VARIANT, weightOf(HEURISTIC_VARIANT)],
      ],
    };
  };
}

/** Serves `version` in place of the current model, at the same percentage. */
export function setModelVersion(file: string, version: string): FlagChange {
  return rewriteFlags(file, modelVersionEdit(version));
}

export function modelVersionEdit(version: string): FlagEdit {
  return (doc, current) => {
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
  };
}

/** The rollout steps `promote` walks through. */
export const ROLLOUT_STEPS = [10, 25, 50, 100] as const;

export function nextStep(percentage: number): number | null {
  return ROLLOUT_STEPS.find((step) => step > percentage) ?? null;
}
