import { execFile, spawnSync } from 'node:child_process';
import { chownSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { presentOrSkip } from './availability.js';
import { tempDir } from './harness.js';
import { freePort } from './process.js';

const run = promisify(execFile);
const asRoot = process.getuid?.() === 0;

/** The newest /usr/lib/postgresql/<version>/bin holding initdb and pg_ctl, or null. */
function binDir(): string | null {
  const root = '/usr/lib/postgresql';
  if (!existsSync(root)) return null;
  const versions = readdirSync(root)
    .filter((v) => existsSync(join(root, v, 'bin', 'initdb')) && existsSync(join(root, v, 'bin', 'pg_ctl')))
    .sort((a, b) => Number(b) - Number(a));
  return versions[0] ? join(root, versions[0], 'bin') : null;
}

/** Uid and gid of the postgres account: initdb refuses root, so as root the cluster runs as postgres. */
function postgresAccount(): { uid: number; gid: number } | null {
  const uid = spawnSync('id', ['-u', 'postgres'], { encoding: 'utf8' });
  const gid = spawnSync('id', ['-g', 'postgres'], { encoding: 'utf8' });
  if (uid.status !== 0 || gid.status !== 0) return null;
  return { uid: Number(uid.stdout.trim()), gid: Number(gid.stdout.trim()) };
}

/** Whether a private cluster can be made here; under CI=true its absence is a failure, not a skip. */
export function privatePostgresAvailable(): boolean {
  const missing = !binDir()
    ? 'initdb and pg_ctl not found in /usr/lib/postgresql/*/bin (apt install postgresql)'
    : asRoot && !postgresAccount()
      ? 'running as root without a postgres account to run initdb as'
      : null;
  return presentOrSkip(missing && `a private Postgres cluster: ${missing}`);
}

export interface PrivatePostgres {
  url: string;
  start(): Promise<void>;
  /** pg_ctl stop in the given mode (fast: active transactions rolled back, clients disconnected). */
  stop(mode?: 'smart' | 'fast' | 'immediate'): Promise<void>;
  /** Stops the server if it runs and removes the cluster. */
  destroy(): Promise<void>;
}

/**
 * A Postgres cluster of the test's own (initdb, trust auth, user postgres) on a free port, which the test
 * may stop and start without touching the machine's shared Postgres on 5432. Commands run asynchronously so
 * a load running in the same process goes on while the server stops or starts.
 */
export async function startPrivatePostgres(): Promise<PrivatePostgres> {
  const bin = binDir();
  if (!bin) throw new Error('no initdb/pg_ctl in /usr/lib/postgresql/*/bin');
  const dir = tempDir('delay-pg-');
  const data = join(dir, 'data');
  const sockets = join(dir, 'sockets');
  mkdirSync(sockets);
  if (asRoot) {
    const account = postgresAccount();
    if (!account) throw new Error('no postgres account to run initdb as');
    for (const path of [dir, sockets]) chownSync(path, account.uid, account.gid);
  }
  const pg = (tool: string, args: string[]) =>
    asRoot ? run('runuser', ['-u', 'postgres', '--', join(bin, tool), ...args]) : run(join(bin, tool), args);
  const port = await freePort();
  const destroy = async () => {
    await pg('pg_ctl', ['-D', data, '-m', 'immediate', '-w', 'stop']).catch(() => undefined);
    rmSync(dir, { recursive: true, force: true });
  };
  const log = join(dir, 'postgres.log');
  const withLog = async (work: Promise<unknown>) => {
    try {
      await work;
    } catch (err) {
      const tail = existsSync(log) ? readFileSync(log, 'utf8').slice(-2000) : '';
      throw new Error(`${(err as Error).message}\n${tail}`);
    }
  };
  const start = () =>
    withLog(
      pg('pg_ctl', [
        '-D',
        data,
        '-l',
        log,
        '-w',
        '-t',
        '30',
        '-o',
        `-p ${port} -k ${sockets} -c listen_addresses=127.0.0.1`,
        'start',
      ]),
    );
  const stop = (mode: 'smart' | 'fast' | 'immediate' = 'fast') =>
    withLog(pg('pg_ctl', ['-D', data, '-m', mode, '-w', '-t', '30', 'stop']));
  try {
    await pg('initdb', ['-D', data, '-A', 'trust', '-U', 'postgres', '--no-sync']);
    await start();
  } catch (err) {
    await destroy();
    throw err;
  }
  return { url: `postgres://postgres@127.0.0.1:${port}/postgres`, start, stop, destroy };
}
