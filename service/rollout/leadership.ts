import type { Logger } from 'pino';
import postgres from 'postgres';

/** Whether this process is the one of the deployment that acts alone (the auto-promoter). */
export interface Leadership {
  isLeader(): Promise<boolean>;
  close(): Promise<void>;
}

/** The advisory lock key of the promotion leader: 'dprm' as a 32-bit integer, so pg_locks shows it in objid. */
export const PROMOTER_LOCK_KEY = 0x6470726d;

/** A process alone on its data (PGlite serves one process): always the leader. */
export const soleLeadership: Leadership = { isLeader: async () => true, close: async () => {} };

/**
 * The leader is the session holding a Postgres advisory lock, which every deployment on Postgres already has.
 * A dedicated connection takes the lock and holds it; each check verifies the session still holds it, so a
 * process whose connection dropped (and whose lock Postgres released) stops leading at its next check, and
 * another takes over at its own.
 */
export function advisoryLockLeadership(
  url: string,
  { logger, key = PROMOTER_LOCK_KEY }: { logger: Logger; key?: number },
): Leadership {
  const log = logger.child({ component: 'leadership' });
  const sql = postgres(url, { max: 1, connect_timeout: 3, idle_timeout: 0, onnotice: () => {} });
  let leading = false;
  const become = (now: boolean) => {
    if (now !== leading) log.info({ lock_key: key }, now ? 'leading the promotion' : 'no longer leading');
    leading = now;
    return now;
  };
  return {
    async isLeader() {
      try {
        const [row] = leading
          ? await sql<{ held: boolean }[]>`select exists (
              select 1 from pg_locks where locktype = 'advisory' and granted
                and pid = pg_backend_pid() and classid = 0 and objid = ${key} and objsubid = 1) as held`
          : await sql<{ held: boolean }[]>`select pg_try_advisory_lock(${key}) as held`;
        return become(row?.held === true);
      } catch (err) {
        log.warn({ err: (err as Error).message }, 'cannot reach Postgres for the leader lock; not leading');
        return become(false);
      }
    },
    close: () => sql.end({ timeout: 2 }),
  };
}
