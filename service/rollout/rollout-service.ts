import { desc } from 'drizzle-orm';
import type { Logger } from 'pino';
import lockfile from 'proper-lockfile';
import { flagChanges } from '../../db/schema.js';
import { FLAG_KEYS } from '../domain/flags.js';
import type { FlagService } from '../flags/flag-service.js';
import {
  addCanary,
  currentModelVersion,
  type FlagChange,
  FlagNotWrittenError,
  setMlPercentage,
  setModelVersion,
} from '../flags/flag-writer.js';
import type { Db } from '../storage/database.js';
import type { ServiceMetrics } from '../telemetry/service-metrics.js';

export interface Actor {
  actor: string;
  action: 'rollback' | 'enable' | 'disable' | 'promote' | 'set-model' | 'canary';
  reason?: string | undefined;
  /** The version the change is about when it is not the first model (a canary). */
  modelVersion?: string | undefined;
  alertName?: string | undefined;
  fingerprint?: string | undefined;
  labels?: Record<string, string> | undefined;
}

/** One alert of an Alertmanager webhook post. */
export interface AlertmanagerAlert {
  status: 'firing' | 'resolved';
  labels: Record<string, string>;
  annotations?: Record<string, string> | undefined;
  fingerprint?: string | undefined;
}

export interface AlertOutcome {
  alertname: string;
  outcome: 'rolled_back' | 'already_rolled_back' | 'ignored';
}

/** A rollback alert whose change this process applied to itself alone: the flag file could not be written. */
export class RollbackNotWrittenError extends Error {
  constructor(
    readonly alertname: string,
    override readonly cause: FlagNotWrittenError,
  ) {
    super(cause.message, { cause });
    this.name = 'RollbackNotWrittenError';
  }
}

/**
 * Every change to the rollout, by a machine (the rollback webhook) or a person (the CLI): validated and
 * atomic (flag-writer), then recorded in the audit table, logged and counted. Changes in one process are
 * serialized, so two alerts arriving together make one rollback and one no-op.
 */
export function createRolloutService({
  flagsFile,
  db,
  metrics,
  logger,
  routing,
}: {
  flagsFile: string;
  db?: Db;
  metrics?: ServiceMetrics;
  logger: Logger;
  /**
   * The running service's routing: a rollback writes from its last accepted text when the file is broken,
   * and routes this process on the rollback when the file cannot be written.
   */
  routing?: Pick<FlagService, 'acceptedText' | 'routeHere'>;
}) {
  const log = logger.child({ component: 'rollout' });
  let queue: Promise<unknown> = Promise.resolve();
  const serialized = <T>(work: () => Promise<T>): Promise<T> => {
    const run = queue.then(work, work);
    queue = run.catch(() => undefined);
    return run;
  };

  async function audit(change: FlagChange, who: Actor) {
    const version = who.modelVersion ?? currentModelVersion(change.next);
    log.info(
      {
        actor: who.actor,
        action: who.action,
        previous_percentage: change.previous.mlPercentage,
        percentage: change.next.mlPercentage,
        model_version: version,
        alert: who.alertName,
      },
      'rollout changed',
    );
    if (who.action === 'rollback') metrics?.rollbacks.add(1, { alertname: who.alertName ?? 'unknown' });
    await db?.insert(flagChanges).values({
      actor: who.actor,
      action: who.action,
      flag: FLAG_KEYS.model,
      previousWeight: change.previous.mlPercentage,
      newWeight: change.next.mlPercentage,
      modelVersion: version,
      reason: who.reason,
      alertName: who.alertName,
      fingerprint: who.fingerprint,
      labels: who.labels,
    });
  }

  /**
   * Holds `<flags file>.lock` across read, write and audit, so the replicas and tools sharing the file make one
   * change of two simultaneous requests: the second reads what the first wrote. A folder that cannot hold the
   * lock (read-only) or a holder that keeps it past the wait goes on without it: a rollback must not wait.
   */
  async function lockFlagsFile(): Promise<() => Promise<void>> {
    try {
      return await lockfile.lock(flagsFile, {
        realpath: false,
        stale: 10_000,
        retries: { retries: 40, factor: 1.3, minTimeout: 10, maxTimeout: 250 },
      });
    } catch (err) {
      log.warn({ err: (err as Error).message }, 'flag file lock not taken; changing the file without it');
      return async () => {};
    }
  }

  const apply = (who: Actor, edit: () => FlagChange) =>
    serialized(async () => {
      const release = await lockFlagsFile();
      try {
        const change = edit();
        if (change.changed) await audit(change, who);
        return change;
      } catch (err) {
        // Applied here but not written: audited as what this process did, and thrown, so the caller says so.
        if (err instanceof FlagNotWrittenError && err.change.changed) {
          await audit(err.change, {
            ...who,
            reason: `${who.reason ?? who.action} (this process only: ${err.message})`,
          });
        }
        throw err;
      } finally {
        await release().catch(() => undefined);
      }
    });

  const setPercentage = (percentage: number, who: Actor) =>
    apply(who, () =>
      setMlPercentage(
        flagsFile,
        percentage,
        // A rollback never depends on the file being valid; a person's change does (they fix the file first).
        who.action === 'rollback' && routing
          ? {
              text: () => routing.acceptedText(),
              onUse: (reason) =>
                log.warn(
                  { err: reason, actor: who.actor },
                  'flag file unreadable or invalid: rolling back from the last configuration the service accepted',
                ),
              routeHere: (text, reason) => routing.routeHere(text, reason),
            }
          : undefined,
      ),
    );

  return {
    setPercentage,
    /**
     * An Alertmanager post: firing alerts labelled rollback="true" set ML traffic to 0%, the rest are ignored.
     * One rollback per post: once ML is at 0%, the other alerts of the post cannot change it, and re-reading
     * the flag file for each of thousands of alerts would hold the event loop for seconds.
     */
    async rollbackOn(alerts: AlertmanagerAlert[]) {
      const results: AlertOutcome[] = [];
      let percentage: number | null = null;
      let rolledBack = false;
      for (const alert of alerts) {
        const alertname = alert.labels.alertname ?? 'unknown';
        let outcome: AlertOutcome['outcome'] = 'ignored';
        const asksRollback = alert.status === 'firing' && alert.labels.rollback === 'true';
        if (asksRollback && rolledBack) {
          outcome = 'already_rolled_back';
        } else if (asksRollback) {
          let change: FlagChange;
          try {
            change = await setPercentage(0, {
              actor: 'alertmanager',
              action: 'rollback',
              alertName: alertname,
              fingerprint: alert.fingerprint,
              labels: alert.labels,
              reason: `${alert.labels.signal ?? 'unknown'} signal: ${alert.annotations?.summary ?? alertname}`,
            });
          } catch (err) {
            if (!(err instanceof FlagNotWrittenError)) throw err;
            metrics?.webhookAlerts.add(1, { outcome: 'rolled_back_here_only' });
            throw new RollbackNotWrittenError(alertname, err);
          }
          outcome = change.changed ? 'rolled_back' : 'already_rolled_back';
          percentage = change.next.mlPercentage;
          rolledBack = percentage === 0;
        }
        metrics?.webhookAlerts.add(1, { outcome });
        results.push({ alertname, outcome });
      }
      return { results, ml_percentage: percentage };
    },
    setModel: (version: string, who: Actor) => apply(who, () => setModelVersion(flagsFile, version)),
    canary: (version: string, percentage: number, who: Actor) =>
      apply(who, () => addCanary(flagsFile, version, percentage)),
    history: (limit = 20) =>
      db
        ? db.select().from(flagChanges).orderBy(desc(flagChanges.at), desc(flagChanges.id)).limit(limit)
        : Promise.resolve([]),
  };
}

export type RolloutService = ReturnType<typeof createRolloutService>;
