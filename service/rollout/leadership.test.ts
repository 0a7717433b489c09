import postgres from 'postgres';
import { afterEach, describe, expect, it } from 'vitest';
import { freshPostgres, postgresAvailable } from '../test-support/databases.js';
import { eventually, silentLogger } from '../test-support/harness.js';
import { advisoryLockLeadership, type Leadership, PROMOTER_LOCK_KEY } from './leadership.js';

const hasPostgres = await postgresAvailable();
const open: { close(): Promise<void> }[] = [];
afterEach(async () => {
  for (const x of open.splice(0).reverse()) await x.close();
});

describe.skipIf(!hasPostgres)('promotion leadership (a Postgres advisory lock)', () => {
  it('elects exactly one of three, hands over when the leader closes, and drops a leader whose session ends', async () => {
    const database = await freshPostgres();
    open.push(database);
    const replicas: Leadership[] = [1, 2, 3].map(() =>
      advisoryLockLeadership(database.url, { logger: silentLogger }),
    );
    open.push(...replicas);
    const leaders = async (rs: Leadership[]) =>
      (await Promise.all(rs.map((r) => r.isLeader()))).filter(Boolean).length;
    expect(await leaders(replicas)).toBe(1);
    expect(await leaders(replicas)).toBe(1);

    const [first, second, third] = replicas as [Leadership, Leadership, Leadership];
    const firstLeads = await first.isLeader();
    const current = firstLeads ? first : (await second.isLeader()) ? second : third;
    const others = replicas.filter((r) => r !== current);
    await current.close();
    open.splice(open.indexOf(current), 1);
    const states = await Promise.all(others.map((r) => r.isLeader()));
    expect(states.filter(Boolean)).toHaveLength(1);
    const next = others[states.indexOf(true)] as Leadership;

    // The leader's session ends under it (a dropped connection, a restarted Postgres): its next check says it
    // no longer leads, and one of the two takes over.
    const admin = postgres(database.url, { max: 1, onnotice: () => {} });
    await admin`select pg_terminate_backend(pid) from pg_locks
                where locktype = 'advisory' and objid = ${PROMOTER_LOCK_KEY} and granted`;
    await admin.end();
    expect(await next.isLeader()).toBe(false);
    await eventually(
      async () => (await Promise.all(others.map((r) => r.isLeader()))).filter(Boolean).length,
      (n) => n === 1,
    );
  });
});
