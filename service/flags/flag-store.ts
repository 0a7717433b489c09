import type { Logger } from 'pino';
import lockfile from 'proper-lockfile';
import type { Config } from '../config/config.js';
import { readFlagFile } from './flag-file.js';
import { type FallbackBase, type FlagChange, type FlagEdit, rewriteFlags } from './flag-writer.js';
import { kubernetesFlagStore } from './kubernetes-flag-store.js';

/** Where changes to the rollout are written: the flag file, or a FeatureFlag through the Kubernetes API. */
export interface FlagStore {
  /** What the store writes, for messages: a path, or kind/namespace/name. */
  readonly where: string;
  /** Applies `edit` to the stored flag document, validated; `fallback` lets a rollback act on a broken store. */
  change(edit: FlagEdit, fallback?: FallbackBase): Promise<FlagChange>;
  /** The stored flag document's text. */
  read(): Promise<string>;
}

/**
 * The flag file. Every change holds `<file>.lock` across its read and write, so the replicas and tools sharing
 * the file make one change of two simultaneous requests: the second reads what the first wrote.
 * A folder that cannot hold the lock (read-only) or a holder that keeps it past the wait goes on without it: a
 * rollback must not wait.
 */
export function fileFlagStore(file: string, logger: Logger): FlagStore {
  async function locked<T>(work: () => Promise<T>): Promise<T> {
    let release: () => Promise<void> = async () => {};
    try {
      release = await lockfile.lock(file, {
        realpath: false,
        stale: 10_000,
        retries: { retries: 40, factor: 1.3, minTimeout: 10, maxTimeout: 250 },
      });
    } catch (err) {
      logger.warn({ err: (err as Error).message }, 'flag file lock not taken; changing the file without it');
    }
    try {
      return await work();
    } finally {
      await release().catch(() => undefined);
    }
  }
  return {
    where: file,
    change: (edit, fallback) => locked(async () => rewriteFlags(file, edit, fallback)),
    read: () => readFlagFile(file),
  };
}

/** The store the configuration names: a FeatureFlag with FLAGS_FEATUREFLAG, else the flag file. */
export function flagStoreFor(config: Config['flagStore'], logger: Logger): FlagStore {
  return config.kind === 'kubernetes'
    ? kubernetesFlagStore({ ...config, logger })
    : fileFlagStore(config.file, logger);
}
