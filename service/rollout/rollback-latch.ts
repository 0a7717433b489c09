import { createHash } from 'node:crypto';
import { and, asc, eq, gt, max, sql } from 'drizzle-orm';
import type { Logger } from 'pino';
import { flagChanges } from '../../db/schema.js';
import { TIMED_OUT, withTimeout } from '../async/with-timeout.js';
import { FLAG_KEYS, HEURISTIC_VARIANT } from '../domain/flags.js';
import type { FlagService, FlagStatus, RollbackLatchStatus } from '../flags/flag-service.js';
import type { Db } from '../storage/database.js';
import type { ServiceMetrics } from '../telemetry/service-metrics.js';

/*
 * An automatic rollback holds until a person lifts it (docs/adr/0014-rollback-latch.md). The latch is read from
 * the audit table: the first automatic rollback row after the last `rollout enable` row. While it holds, a flag
 * that asks for ML (a re-applied FeatureFlag, a pulled or edited flag file, what flagd serves) routes no booking
 * to a model; each such change is audited once as refused, counted and logged.
 */

/** What holds the latch: the first automatic rollback since the last lift. */
export interface LatchHold {
  since: Date;
  actor: string;
  alert: string | null;
  reason: string | null;
}

/** The audit's view: the hold (null: lifted or never taken) and when a person last lifted it. */
export interface AuditedLatch {
  hold: LatchHold | null;
  liftedAt: Date | null;
}

/** What the rollout's changes need of the latch: whether it holds, and word of the rollbacks and lifts they make. */
export interface LatchKeeper {
  current(): Promise<LatchHold | null>;
  taken(hold: LatchHold): void;
  lifted(at: Date): void;
}

/** A promotion asked while the latch holds: only a person's `rollout enable` raises ML after a rollback. */
export class RollbackLatchHeldError extends Error {
  constructor(readonly hold: LatchHold) {
    super(
      `the rollback latch holds since ${hold.since.toISOString()} (${hold.alert ?? hold.actor}): only a person lifts it, with rollout enable --percentage N`,
    );
    this.name = 'RollbackLatchHeldError';
  }
}

/** The audit action of a flag change the latch refused. */
export const REFUSED_ACTION = 'refused';
/**
 * How long a change that asks for ML while the latch holds waits before it is judged refused: a person's
 * `rollout enable` writes the flag first and its audit row after it (waited for up to 2 s), and that row lifts
 * the latch.
 */
export const REFUSAL_CONFIRM_MS = 3000;
/** What one read of the audit, or one write of a refused row, may take before it counts as failed. */
const DATABASE_TIMEOUT_MS = 2000;
/** Serializes refused rows across replicas: 'dprl' as a 32-bit integer, as pg_locks shows it. */
const REFUSAL_LOCK_KEY = 0x6470726c;

/** The latch as the audit table records it: the first `rollback` row after the last `enable` row. */
export async function readAuditedLatch(db: Db): Promise<AuditedLatch> {
  const ofModel = eq(flagChanges.flag, FLAG_KEYS.model);
  const [lift] = await db
    .select({ at: max(flagChanges.at) })
    .from(flagChanges)
    .where(and(ofModel, eq(flagChanges.action, 'enable')));
  const liftedAt = lift?.at ?? null;
  const [row] = await db
    .select()
    .from(flagChanges)
    .where(
      and(ofModel, eq(flagChanges.action, 'rollback'), liftedAt ? gt(flagChanges.at, liftedAt) : undefined),
    )
    .orderBy(asc(flagChanges.at), asc(flagChanges.id))
    .limit(1);
  return {
    hold: row ? { since: row.at, actor: row.actor, alert: row.alertName, reason: row.reason } : null,
    liftedAt,
  };
}

const later = (a: Date | null, b: Date | null) => (a && b ? (a > b ? a : b) : (a ?? b));

/**
 * The hold in force from the audit's view and this process's own: a hold counts unless a lift came after it;
 * the earliest hold left is the one that took the latch.
 */
export function holdInForce(
  audited: AuditedLatch | null,
  local: LatchHold | null,
  localLift: Date | null,
): LatchHold | null {
  const lastLift = later(audited?.liftedAt ?? null, localLift);
  const holds = [audited?.hold ?? null, local].filter(
    (h): h is LatchHold => h !== null && (lastLift === null || h.since > lastLift),
  );
  return holds.reduce<LatchHold | null>((first, h) => (first && first.since <= h.since ? first : h), null);
}

/** Whether the flag sends bookings to a model: a share above 0, or one unknown (targeting that is not a split). */
export const asksForMl = (status: FlagStatus) => status.ml_percentage !== 0;

/** One refused row per latch and per split asked: the replicas that see the same change write it once. */
export function refusalKey(hold: LatchHold, status: FlagStatus): string {
  const asked = status.split ?? { ml_percentage: status.ml_percentage, models: status.model_versions };
  const hash = createHash('sha256')
    .update(`${hold.since.toISOString()}\n${JSON.stringify(asked)}`)
    .digest('hex');
  return `latch-refused-${hash.slice(0, 16)}`;
}

const describeSplit = (status: FlagStatus) =>
  status.split?.map((s) => `${s.variant} ${s.weight}%`).join(', ') ??
  `ML ${status.ml_percentage ?? 'unknown'}%`;

/** The latch for a tool that routes nothing (the rollout CLI): read from the audit at each question. */
export function auditLatchKeeper(db: Db): LatchKeeper {
  return { current: async () => (await readAuditedLatch(db)).hold, taken: () => {}, lifted: () => {} };
}

export interface RollbackLatchOptions {
  flags: Pick<FlagService, 'status' | 'onChange'>;
  /** Where refused changes are audited; without it they are only logged and counted. */
  db?: Db;
  /**
   * True: the latch is read from `db`'s audit table, which every replica shares (Postgres). False: it is kept in
   * this process and lost when it stops (PGlite, which serves one process and which the CLI does not open).
   */
  shared: boolean;
  /** Who asks for ML when the flag does, for the refused row's actor: the flag file, flagd, the FeatureFlag. */
  source: string;
  metrics: Pick<ServiceMetrics, 'rolloutLatchHeld' | 'rolloutLatchRefusals' | 'rolloutLatchErrors'>;
  logger: Logger;
  /** How often the audit is read (ROLLBACK_LATCH_POLL_INTERVAL_MS). */
  pollMs: number;
  confirmMs?: number;
  now?: () => Date;
}

/** A change seen asking for ML while the latch holds, until it is judged and audited. */
interface Refusal {
  key: string;
  status: FlagStatus;
  seenAt: Date;
  counted: boolean;
}

export function createRollbackLatch({
  flags,
  db,
  shared,
  source,
  metrics,
  logger,
  pollMs,
  confirmMs = REFUSAL_CONFIRM_MS,
  now = () => new Date(),
}: RollbackLatchOptions) {
  const log = logger.child({ component: 'rollback-latch' });
  const sourceKind = flags.status().source.kind;
  const reader = shared ? db : undefined;
  let audited: AuditedLatch | null = null;
  let local: LatchHold | null = null;
  let localLift: Date | null = null;
  let hold: LatchHold | null = null;
  let checkedAt: Date | null = null;
  let lastError: { at: Date; message: string } | null = null;
  let refusal: Refusal | null = null;
  /** Refusals this process has audited (or found audited by another replica): never written twice. */
  const done = new Set<string>();

  const fail = (operation: 'read' | 'audit', message: string) => {
    metrics.rolloutLatchErrors.add(1, { operation });
    lastError = { at: now(), message };
    log.warn({ err: message, operation }, 'rollback latch: the audit table did not answer; trying again');
  };

  /** Notes a flag that asks for ML while the latch holds, and forgets one that no longer does. */
  function observe() {
    const status = flags.status();
    // A flag configuration older than the hold is the one the rollback replaced, still on its way here.
    const changedAfterHold =
      hold !== null && status.last_changed_at !== null && Date.parse(status.last_changed_at) > +hold.since;
    if (!hold || !asksForMl(status) || !changedAfterHold) {
      refusal = null;
      return;
    }
    const key = refusalKey(hold, status);
    if (refusal?.key === key || done.has(key)) return;
    refusal = { key, status, seenAt: now(), counted: false };
  }

  function settle() {
    const before = hold;
    hold = holdInForce(audited, local, localLift);
    if (!before && hold) {
      log.warn(
        { since: hold.since.toISOString(), alert: hold.alert, actor: hold.actor, reason: hold.reason },
        'rollback latch held: no booking goes to ML, whatever the flag says, until a person runs rollout enable',
      );
    } else if (before && !hold) {
      log.info(
        { held_since: before.since.toISOString() },
        "rollback latch lifted: ML served at the flag's share",
      );
      done.clear();
    }
    observe();
  }

  async function auditRefusal(database: Db, r: Refusal, h: LatchHold) {
    const row: typeof flagChanges.$inferInsert = {
      at: r.seenAt,
      actor: source,
      action: REFUSED_ACTION,
      flag: FLAG_KEYS.model,
      previousWeight: 0,
      newWeight: r.status.ml_percentage,
      modelVersion: r.status.model_versions[0] ?? null,
      reason: `${source} asks ${describeSplit(r.status)} while the rollback latch holds (since ${h.since.toISOString()}, ${h.alert ?? h.actor}): not routed to ML; a person lifts it with rollout enable once the cause is fixed`,
      alertName: h.alert,
      fingerprint: r.key,
      labels: { latch_since: h.since.toISOString(), split: describeSplit(r.status) },
    };
    return database.transaction(async (tx) => {
      await tx.execute(sql`select pg_advisory_xact_lock(${REFUSAL_LOCK_KEY})`);
      const [found] = await tx
        .select({ id: flagChanges.id })
        .from(flagChanges)
        .where(and(eq(flagChanges.action, REFUSED_ACTION), eq(flagChanges.fingerprint, r.key)))
        .limit(1);
      if (found) return 'found' as const;
      await tx.insert(flagChanges).values(row);
      return 'written' as const;
    });
  }

  /** Judges the change seen (after `confirmMs`, on a latch read begun after it) and audits it once. */
  async function judge(readBegunAt: Date) {
    const r = refusal;
    const h = hold;
    if (!r || !h || +readBegunAt - +r.seenAt < confirmMs) return;
    if (!r.counted) {
      r.counted = true;
      metrics.rolloutLatchRefusals.add(1, { source: sourceKind });
      log.warn(
        {
          source,
          ml_percentage: r.status.ml_percentage,
          split: r.status.split,
          latch_since: h.since.toISOString(),
          alert: h.alert,
        },
        'flag change refused by the rollback latch: it asks for ML, no booking goes to ML (lift with rollout enable, or restore the rollback in Git)',
      );
    }
    if (!db) {
      done.add(r.key);
      refusal = null;
      return;
    }
    try {
      const outcome = await withTimeout(auditRefusal(db, r, h), DATABASE_TIMEOUT_MS);
      if (outcome === TIMED_OUT) throw new Error(`no answer within ${DATABASE_TIMEOUT_MS} ms`);
      done.add(r.key);
      if (refusal?.key === r.key) refusal = null;
    } catch (err) {
      fail('audit', `refused flag change not audited: ${(err as Error).message}`);
    }
  }

  let running: Promise<void> | null = null;
  /** One read of the audit (shared), then the judgement of what the flag asks; never two at once. */
  function tick(): Promise<void> {
    if (running) return running;
    running = (async () => {
      const begunAt = now();
      let fresh = true;
      if (reader) {
        try {
          const read = await withTimeout(readAuditedLatch(reader), DATABASE_TIMEOUT_MS);
          if (read === TIMED_OUT) throw new Error(`no answer within ${DATABASE_TIMEOUT_MS} ms`);
          audited = read;
          checkedAt = now();
          lastError = null;
        } catch (err) {
          // The last state read stays in force: a database outage neither takes nor lifts the latch, and judges
          // no change refused (a person's enable row may be what it hides).
          fresh = false;
          fail('read', `cannot read the latch from flag_changes: ${(err as Error).message}`);
        }
      } else {
        checkedAt = begunAt;
      }
      settle();
      if (fresh) await judge(begunAt);
    })().finally(() => {
      running = null;
    });
    return running;
  }

  const observeGauge = (result: { observe(value: number): void }) => result.observe(hold ? 1 : 0);
  metrics.rolloutLatchHeld.addCallback(observeGauge);
  let timer: NodeJS.Timeout | undefined;

  function status(): RollbackLatchStatus {
    const asked = flags.status();
    return {
      held: hold !== null,
      scope: reader ? 'shared' : 'process',
      since: hold?.since.toISOString() ?? null,
      actor: hold?.actor ?? null,
      alert: hold?.alert ?? null,
      reason: hold?.reason ?? null,
      refused: hold && asksForMl(asked) ? { ml_percentage: asked.ml_percentage, split: asked.split } : null,
      checked_at: checkedAt?.toISOString() ?? null,
      last_error: lastError ? { at: lastError.at.toISOString(), message: lastError.message } : null,
    };
  }

  return {
    /** The first read (at boot), then one every `pollMs`; a flag change is looked at at once. */
    async start() {
      if (reader) {
        log.info({ poll_ms: pollMs }, 'rollback latch read from flag_changes, shared by every replica');
      } else {
        log.warn(
          'rollback latch kept in this process only (no DATABASE_URL): an automatic rollback holds ML off here until the service restarts; rollout enable cannot lift it (the CLI does not open the service PGlite), a restart does',
        );
      }
      await tick();
      flags.onChange(() => {
        observe();
        void tick();
      });
      timer = setInterval(() => void tick(), pollMs);
      timer.unref();
    },
    /** Reads the audit now: what a test or a change waits for. */
    refresh: tick,
    held: () => hold !== null,
    status,
    keeper: {
      current: async () => hold,
      taken(h) {
        local = h;
        settle();
      },
      lifted(at) {
        localLift = at;
        settle();
      },
    } satisfies LatchKeeper,
    /**
     * The flag service as the prediction path sees it: a booking the flag sends to a model gets the heuristic
     * while the latch holds (`latched`), and the status carries the latch.
     */
    guard(routed: FlagService): FlagService {
      return {
        ...routed,
        async modelVariant(bookingId, context) {
          const assignment = await routed.modelVariant(bookingId, context);
          return hold && assignment.variant !== HEURISTIC_VARIANT
            ? { variant: HEURISTIC_VARIANT, latched: true }
            : assignment;
        },
        status: () => ({ ...routed.status(), rollback_latch: status() }),
      };
    },
    async close() {
      clearInterval(timer);
      metrics.rolloutLatchHeld.removeCallback(observeGauge);
      await running;
    },
  };
}

export type RollbackLatch = ReturnType<typeof createRollbackLatch>;
