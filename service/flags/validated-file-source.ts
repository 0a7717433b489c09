import { mkdtempSync, rmSync, unwatchFile, watchFile } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join, resolve } from 'node:path';
import type { Logger } from 'pino';
import { FlagConfigError, parseFlagConfig, type RolloutState } from './flag-config.js';
import { readFlagFile, replaceFile } from './flag-file.js';

export class FlagFileError extends Error {
  constructor(
    readonly file: string,
    reason: string,
  ) {
    super(`flag file ${file}: ${reason}`);
    this.name = 'FlagFileError';
  }
}

export interface ValidatedFileSourceOptions {
  file: string;
  pollIntervalMs: number;
  logger: Logger;
  /** Hears every file refused (unreadable, invalid, not copied), after it is recorded as the last error. */
  onRefused: (message: string) => void;
}

/**
 * The flag file as the provider sees it: a private copy holding only the files this source accepted (strict
 * flagd schema plus this service's rules). Reading the file itself, the provider would apply a file flagd's
 * schema refuses, since it parses without strict validation.
 */
export interface ValidatedFileSource {
  /** The copy, for the provider to read and watch. */
  readonly copy: string;
  rollout(): RolloutState;
  /** The text of the last file accepted, or routed on by `routeHere`. */
  acceptedText(): string;
  lastChangedAt(): Date;
  lastError(): { at: Date; message: string } | null;
  /**
   * Routes on `text` (validated, throws if invalid) when a rollback could not be written to the file; the
   * next valid file read replaces it.
   */
  routeHere(text: string, reason: string): boolean;
  stopWatching(): void;
  /** Deletes the copy: once the provider reading it is closed. */
  removeCopy(): void;
}

/** Reads and validates the file (FlagFileError when it cannot serve), publishes it, and watches it. */
export async function startValidatedFileSource(o: ValidatedFileSourceOptions): Promise<ValidatedFileSource> {
  const log = o.logger;
  const file = resolve(o.file);
  let rollout: RolloutState;
  let text: string;
  try {
    text = await readFlagFile(file);
    rollout = parseFlagConfig(text);
  } catch (err) {
    throw new FlagFileError(file, (err as Error).message);
  }
  const copyDir = mkdtempSync(join(tmpdir(), 'delay-flags-accepted-'));
  const copy = join(copyDir, basename(file));
  let acceptedText = text;
  let lastText: string | null = text;
  let lastError: { at: Date; message: string } | null = null;
  const publish = (accepted: string) => {
    replaceFile(copy, accepted);
    acceptedText = accepted;
  };
  publish(text);
  let lastChangedAt = new Date();
  let stopped = false;
  // Bumped by routeHere: a read begun before it must not put back the file it routed around.
  let generation = 0;

  const refuse = (message: string) => {
    lastError = { at: new Date(), message };
    o.onRefused(message);
  };

  const check = async () => {
    const begun = generation;
    let next: string;
    try {
      next = await readFlagFile(file);
    } catch (err) {
      if (!stopped && begun === generation) refuse(`cannot read ${file}: ${(err as Error).message}`);
      return;
    }
    if (stopped || begun !== generation) return;
    if (next === lastText) {
      // The file is back as it was accepted (after a failed read): nothing to apply, nothing wrong any more.
      if (next === acceptedText) lastError = null;
      return;
    }
    try {
      const accepted = parseFlagConfig(next);
      publish(next);
      rollout = accepted;
      lastText = next;
      lastChangedAt = new Date();
      lastError = null;
      log.info(
        { ml_percentage: rollout.mlPercentage, models: rollout.activeModelVersions },
        'flag file changed',
      );
    } catch (err) {
      // A refused file is refused once; a failed write of the accepted copy is tried again next poll.
      if (err instanceof FlagConfigError) lastText = next;
      refuse(`${file}: ${err instanceof FlagConfigError ? err.message : `cannot apply: ${String(err)}`}`);
    }
  };
  // One read at a time: changes seen during a read are read once it ends, so polls never pile reads up.
  let reading = false;
  let changedMeanwhile = false;
  const onChange = async () => {
    if (reading) {
      changedMeanwhile = true;
      return;
    }
    reading = true;
    try {
      do {
        changedMeanwhile = false;
        await check();
      } while (changedMeanwhile && !stopped);
    } finally {
      reading = false;
    }
  };
  // A change goes through two polls, the file's then the copy's: half the interval each keeps it applied
  // within FLAGS_POLL_INTERVAL_MS. The copy's is registered before the provider's own watcher: Node shares
  // one stat poller per file, so this interval also paces the provider's reloads.
  const interval = Math.max(1, Math.floor(o.pollIntervalMs / 2));
  const pace = () => {};
  watchFile(file, { interval, persistent: false }, onChange);
  watchFile(copy, { interval, persistent: false }, pace);
  // The poller's first stat is its baseline: a change written between the read above and that stat would go
  // unnoticed until the next one. One read once the first poll has run closes the gap.
  const settle = setTimeout(onChange, interval * 2);
  settle.unref();

  return {
    copy,
    rollout: () => rollout,
    acceptedText: () => acceptedText,
    lastChangedAt: () => lastChangedAt,
    lastError: () => lastError,

    routeHere(text, reason) {
      const routed = parseFlagConfig(text);
      publish(text);
      rollout = routed;
      generation += 1;
      // The file, once readable and valid again, is the source of truth: even its old content is applied.
      lastText = null;
      lastChangedAt = new Date();
      lastError = {
        at: new Date(),
        message: `this process routes on a change the flag file could not hold (${reason}); other readers of ${file} do not see it`,
      };
      log.error(
        { err: reason, ml_percentage: routed.mlPercentage },
        'flag file not writable: this process alone routes on the change',
      );
      return true;
    },

    stopWatching() {
      stopped = true;
      clearTimeout(settle);
      unwatchFile(file, onChange);
      unwatchFile(copy, pace);
    },

    removeCopy() {
      rmSync(copyDir, { recursive: true, force: true });
    },
  };
}
