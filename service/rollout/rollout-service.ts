import { desc } from 'drizzle-orm';
import type { Logger } from 'pino';
import { flagChanges } from '../../db/schema.js';
import { FLAG_KEYS } from '../domain/flags.js';
import type { FlagService } from '../flags/flag-service.js';
import { type FlagStore, fileFlagStore } from '../flags/flag-store.js';
import {
  canaryEdit,
  currentModelVersion,
  type FallbackBase,
  type FlagChange,
  type FlagEdit,
  FlagNotWrittenError,
  mlPercentageEdit,
  modelVersionEdit,
} from '../flags/flag-writer.js';
import { FlagStoreError } from '../flags/kubernetes-flag-store.js';
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

/**
 * A rollback alert whose change was not written: applied to this process alone (FlagNotWrittenError: the flag
 * file could not be written), or not at all (FlagStoreError: the Kubernetes API refused it).
 */
export class RollbackNotWrittenError extends Error {
  constructor(
    readonly alertname: string,
    override readonly cause: FlagNotWrittenError | FlagStoreError,
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
  db,
  metrics,
  logger,
  routing,
  ...target
}: ({ store: FlagStore } | { flagsFile: string }) & {
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
  // Where changes go: the store given (a FeatureFlag on Kubernetes), or the flag file.
  const store = 'store' in target ? target.store : fileFlagStore(target.flagsFile, log);
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

  const apply = (who: Actor, edit: FlagEdit, fallback?: FallbackBase) =>
    serialized(async () => {
      try {
        const change = await store.change(edit, fallback);
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
      }
    });

  // async: an invalid argument is a rejected promise, like every other refusal.
  const setPercentage = async (percentage: number, who: Actor) =>
    apply(
      who,
      mlPercentageEdit(percentage),
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
            if (err instanceof FlagNotWrittenError) {
              metrics?.webhookAlerts.add(1, { outcome: 'rolled_back_here_only' });
              throw new RollbackNotWrittenError(alertname, err);
            }
            if (err instanceof FlagStoreError) {
              metrics?.webhookAlerts.add(1, { outcome: 'failed' });
              throw new RollbackNotWrittenError(alertname, err);
            }
            throw err;
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
    setModel: async (version: string, who: Actor) => apply(who, modelVersionEdit(version)),
    canary: async (version: string, percentage: number, who: Actor) =>
      apply(who, canaryEdit(version, percentage)),
    history: (limit = 20) =>
      db
        ? db.select().from(flagChanges).orderBy(desc(flagChanges.at), desc(flagChanges.id)).limit(limit)
        : Promise.resolve([]),
  };
}

export type RolloutService = ReturnType<typeof createRolloutService>;
