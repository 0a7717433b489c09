import { and, desc, gt, lt, max, or, sql } from 'drizzle-orm';
import type { Logger } from 'pino';
import { flagChanges } from '../../db/schema.js';
import { FLAG_KEYS } from '../domain/flags.js';
import type { FlagService } from '../flags/flag-service.js';
import { type FlagStore, fileFlagStore } from '../flags/flag-store.js';
import {
  canaryEdit,
  currentModelVersion,
  expecting,
  type FallbackBase,
  type FlagChange,
  type FlagEdit,
  FlagNotWrittenError,
  type JudgedRollout,
  mlPercentageEdit,
  modelVersionEdit,
} from '../flags/flag-writer.js';
import type { Db } from '../storage/database.js';
import type { ServiceMetrics } from '../telemetry/service-metrics.js';
import { type LatchKeeper, RollbackLatchHeldError } from './rollback-latch.js';

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
  outcome: 'rolled_back' | 'already_rolled_back' | 'not_served' | 'ignored';
  /** The alert's model_version label, when it names one. */
  model_version?: string;
}

/**
 * A change's audit row: stored before the answer (written), not stored within the audit timeout and still being
 * written (late), given up on and logged in full (failed), or not kept at all (none: no database, or no change).
 */
export type AuditOutcome = 'written' | 'late' | 'failed' | 'none';

export type AppliedChange = FlagChange & { audit: AuditOutcome };

/**
 * A rollback alert whose change was not written: applied to this process alone (FlagNotWrittenError: the flag
 * file could not be written), or not at all (the store refused or could not be reached, the file and the last
 * accepted configuration were unusable).
 */
export class RollbackNotWrittenError extends Error {
  constructor(
    readonly alertname: string,
    override readonly cause: Error,
  ) {
    super(cause.message, { cause });
    this.name = 'RollbackNotWrittenError';
  }
}

export interface AuditOptions {
  /**
   * How long a change waits for its audit row before answering (2 s by default): a locked or slow flag_changes
   * table must not hold a rollback's answer, nor the changes queued behind it.
   */
  timeoutMs?: number;
  /** Pauses between tries of a row whose insert failed; after the last, the row is logged in full and dropped. */
  retryDelaysMs?: number[];
}

const sleep = (ms: number) =>
  new Promise<void>((resolve) => {
    setTimeout(resolve, ms).unref();
  });

/** `work`, or an error once `ms` have passed: the work itself goes on. */
async function within<T>(ms: number, what: string, work: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: no answer within ${ms} ms`)), ms);
    timer.unref();
  });
  try {
    return await Promise.race([work, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Every change to the rollout, by a machine (the rollback webhook, the promoter) or a person (the CLI): validated
 * and atomic (flag-writer), then recorded in the audit table, logged and counted. Changes in one process are
 * serialized, so two alerts arriving together make one rollback and one no-op. The audit row is waited for up to
 * `audit.timeoutMs`: past it the change is answered (its audit `late`) and the row is still written, retried on
 * failure, and logged in full if it never is: a database that hangs delays no rollback and loses no row silently.
 */
export function createRolloutService({
  db,
  metrics,
  logger,
  routing,
  audit: auditOptions = {},
  servable,
  latch,
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
  audit?: AuditOptions;
  /**
   * Throws unless the model registry can serve `version` (service/models/model-store.ts `require`): canary and
   * set-model name only registered versions.
   */
  servable?: (version: string) => Promise<void>;
  /**
   * The rollback latch (rollback-latch.ts): a rollback takes it, a person's enable lifts it (and is audited even
   * when the flag already holds the share asked), and no promotion raises ML while it holds.
   */
  latch?: LatchKeeper;
}) {
  const log = logger.child({ component: 'rollout' });
  const auditTimeoutMs = auditOptions.timeoutMs ?? 2000;
  const retryDelaysMs = auditOptions.retryDelaysMs ?? [1000, 5000, 30_000];
  // Where changes go: the store given (a FeatureFlag on Kubernetes), or the flag file.
  const store = 'store' in target ? target.store : fileFlagStore(target.flagsFile, log);
  let queue: Promise<unknown> = Promise.resolve();
  const serialized = <T>(work: () => Promise<T>): Promise<T> => {
    const run = queue.then(work, work);
    queue = run.catch(() => undefined);
    return run;
  };

  type AuditRow = typeof flagChanges.$inferInsert;
  /** Rows still being written after their change was answered, for `close` to wait for. */
  const pending = new Set<Promise<unknown>>();

  /** Inserts `row`, trying again after each failure; 'failed' once the tries are spent (the row is logged). */
  async function insertAuditRow(database: Db, row: AuditRow): Promise<'written' | 'failed'> {
    for (let attempt = 0; ; attempt++) {
      try {
        await database.insert(flagChanges).values(row);
        return 'written';
      } catch (err) {
        const delay = retryDelaysMs[attempt];
        if (delay === undefined) {
          metrics?.auditWrites.add(1, { outcome: 'failed' });
          log.error(
            { err: (err as Error).message, audit_row: row, attempts: attempt + 1 },
            'audit row of a rollout change never stored; it is only in this log',
          );
          return 'failed';
        }
        log.warn(
          { err: (err as Error).message, attempt: attempt + 1, retry_in_ms: delay },
          'audit row not stored; trying again',
        );
        await sleep(delay);
      }
    }
  }

  async function audit(change: FlagChange, who: Actor): Promise<AuditOutcome> {
    const version = who.modelVersion ?? currentModelVersion(change.next);
    // When the change was made, whenever the row lands: the latch orders rollbacks and lifts by it.
    const at = new Date();
    if (who.action === 'rollback')
      latch?.taken({ since: at, actor: who.actor, alert: who.alertName ?? null, reason: who.reason ?? null });
    if (who.action === 'enable') latch?.lifted(at);
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
    if (!db) return 'none';
    const row: AuditRow = {
      at,
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
    };
    const stored = insertAuditRow(db, row);
    const inTime = await Promise.race([stored, sleep(auditTimeoutMs).then(() => 'late' as const)]);
    if (inTime === 'written') metrics?.auditWrites.add(1, { outcome: 'written' });
    if (inTime !== 'late') return inTime;
    metrics?.auditWrites.add(1, { outcome: 'late' });
    log.warn(
      { audit_row: row, timeout_ms: auditTimeoutMs },
      'audit row not stored in time: the change is made and answered, the row is still being written',
    );
    const late = stored.then((outcome) => {
      if (outcome === 'written') log.info({ audit_row: row }, 'audit row stored late');
    });
    pending.add(late);
    void late.finally(() => pending.delete(late));
    return 'late';
  }

  const apply = (who: Actor, edit: FlagEdit, fallback?: FallbackBase): Promise<AppliedChange> =>
    serialized(async () => {
      try {
        if (who.action === 'promote') {
          const held = await latch?.current();
          if (held) throw new RollbackLatchHeldError(held);
        }
        const change = await store.change(edit, fallback);
        // A person's enable lifts the latch even when the flag already asks for that share (restored from Git);
        // a latch that cannot be read is lifted all the same: an extra enable row lifts nothing else.
        const lifts =
          who.action === 'enable' &&
          !change.changed &&
          latch !== undefined &&
          (await latch.current().then(
            (held) => held !== null,
            () => true,
          ));
        return { ...change, audit: change.changed || lifts ? await audit(change, who) : 'none' };
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

  // A rollback never depends on the file being valid; a person's change does (they fix the file first).
  const fallbackFor = (who: Actor): FallbackBase | undefined =>
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
      : undefined;

  // async: an invalid argument is a rejected promise, like every other refusal.
  const setPercentage = async (percentage: number, who: Actor) =>
    apply(who, mlPercentageEdit(percentage), fallbackFor(who));

  /**
   * Sets ML to 0% for `alert`, unless it names a model_version the flag does not route to: an alert about a
   * version already replaced (its late feedback) says nothing about the one serving now.
   */
  async function rollBack(alert: AlertmanagerAlert, alertname: string) {
    const named = alert.labels.model_version;
    let served = true;
    const edit: FlagEdit = (doc, current) => {
      // At 0% nothing is served and the rollback makes sure of it; otherwise the version must be one routed to.
      served =
        !named || current.activeModelVersions.length === 0 || current.activeModelVersions.includes(named);
      if (served) mlPercentageEdit(0)(doc, current);
    };
    const who: Actor = {
      actor: 'alertmanager',
      action: 'rollback',
      alertName: alertname,
      fingerprint: alert.fingerprint,
      labels: alert.labels,
      reason: `${alert.labels.signal ?? 'unknown'} signal: ${alert.annotations?.summary ?? alertname}`,
    };
    const change = await apply(who, edit, fallbackFor(who));
    return { change, served };
  }

  return {
    setPercentage,
    /**
     * Moves ML to `percentage` only while the flag holds `judged`, the rollout the promoter measured: checked
     * against what the store holds under its lock, so a rollback landing meanwhile makes it RolloutChangedError.
     */
    promote: async (judged: JudgedRollout, percentage: number, who: Actor) =>
      apply(who, expecting(judged, mlPercentageEdit(percentage))),
    /**
     * An Alertmanager post: firing alerts labelled rollback="true" set ML traffic to 0%, the rest are ignored;
     * one naming a model_version the flag does not route to changes nothing (not_served). One rollback per post:
     * once ML is at 0%, the other alerts of the post cannot change it, and re-reading the flag file for each of
     * thousands of alerts would hold the event loop for seconds; for the same reason a version found not served
     * is not looked up again within the post.
     */
    async rollbackOn(alerts: AlertmanagerAlert[]) {
      const results: AlertOutcome[] = [];
      let percentage: number | null = null;
      let rolledBack = false;
      let auditOutcome: AuditOutcome = 'none';
      const notServed = new Set<string>();
      for (const alert of alerts) {
        const alertname = alert.labels.alertname ?? 'unknown';
        const version = alert.labels.model_version;
        let outcome: AlertOutcome['outcome'] = 'ignored';
        const asksRollback = alert.status === 'firing' && alert.labels.rollback === 'true';
        if (asksRollback && rolledBack) {
          outcome = 'already_rolled_back';
        } else if (asksRollback && version !== undefined && notServed.has(version)) {
          outcome = 'not_served';
        } else if (asksRollback) {
          let result: Awaited<ReturnType<typeof rollBack>>;
          try {
            result = await rollBack(alert, alertname);
          } catch (err) {
            // Whatever stopped the write (a refused or unreachable store, a file and a last configuration both
            // unusable), ML still serves: a 5xx, so Alertmanager sends it again.
            const here = err instanceof FlagNotWrittenError;
            metrics?.webhookAlerts.add(1, { outcome: here ? 'rolled_back_here_only' : 'failed' });
            if (!here) log.error({ err: (err as Error).message, alert: alertname }, 'rollback not written');
            throw new RollbackNotWrittenError(alertname, err as Error);
          }
          const { change, served } = result;
          percentage = change.next.mlPercentage;
          if (!served) {
            outcome = 'not_served';
            notServed.add(version as string);
            log.warn(
              { alert: alertname, model_version: version, served: change.next.activeModelVersions },
              'rollback alert for a model version the flag does not route to: nothing rolled back',
            );
          } else {
            outcome = change.changed ? 'rolled_back' : 'already_rolled_back';
            if (change.changed) auditOutcome = change.audit;
            rolledBack = percentage === 0 || change.next.activeModelVersions.length === 0;
          }
        }
        metrics?.webhookAlerts.add(1, { outcome });
        results.push({ alertname, outcome, ...(version !== undefined ? { model_version: version } : {}) });
      }
      return { results, ml_percentage: percentage, audit: auditOutcome };
    },
    setModel: async (version: string, who: Actor) => {
      await servable?.(version);
      return apply(who, modelVersionEdit(version));
    },
    canary: async (version: string, percentage: number, who: Actor) => {
      await servable?.(version);
      return apply(who, canaryEdit(version, percentage));
    },
    history: async (limit = 20): Promise<(typeof flagChanges.$inferSelect)[]> =>
      db
        ? db.select().from(flagChanges).orderBy(desc(flagChanges.at), desc(flagChanges.id)).limit(limit)
        : [],
    /** The newest audit row's id, for `loweredSince`; null without a database or an audit row. */
    async auditMark(): Promise<number | null> {
      if (!db) return null;
      const [row] = await within(
        auditTimeoutMs,
        'reading flag_changes',
        db.select({ id: max(flagChanges.id) }).from(flagChanges),
      );
      return row?.id ?? null;
    },
    /**
     * The first audited change after `mark` that lowered the ML share (a rollback, a disable, a smaller enable),
     * or null: a change a promotion judged before must not be undone by it, even once ML is back where it was.
     */
    async loweredSince(mark: number | null) {
      if (!db) return null;
      const [row] = await within(
        auditTimeoutMs,
        'reading flag_changes',
        db
          .select()
          .from(flagChanges)
          .where(
            and(
              mark === null ? undefined : gt(flagChanges.id, mark),
              or(
                sql`${flagChanges.action} = 'rollback'`,
                lt(flagChanges.newWeight, flagChanges.previousWeight),
              ),
            ),
          )
          .orderBy(flagChanges.id)
          .limit(1),
      );
      return row ?? null;
    },
    /** Waits up to `ms` for audit rows still being written; those left are logged in full and counted failed. */
    async close(ms: number) {
      const left = [...pending];
      if (left.length === 0) return;
      const done = await Promise.race([Promise.all(left).then(() => true), sleep(ms).then(() => false)]);
      if (!done) {
        const unwritten = pending.size;
        metrics?.auditWrites.add(unwritten, { outcome: 'failed' });
        log.error(
          { unwritten },
          'audit rows not stored before shutdown: each is in this log (audit row not stored in time)',
        );
      }
    },
  };
}

export type RolloutService = ReturnType<typeof createRolloutService>;
