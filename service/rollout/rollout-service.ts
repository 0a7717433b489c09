import { desc } from 'drizzle-orm';
import type { Logger } from 'pino';
import { flagChanges } from '../../db/schema.js';
import { FLAG_KEYS } from '../flags/flag-config.js';
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

  const apply = (who: Actor, edit: () => FlagChange) =>
    serialized(async () => {
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
      }
    });

  return {
    setPercentage: (percentage: number, who: Actor) =>
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
      ),
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
