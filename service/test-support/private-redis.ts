import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { presentOrSkip } from './availability.js';
import { freePort } from './process.js';

const REDIS_SERVER = '/usr/bin/redis-server';

/** Whether redis-server is here; under CI=true its absence is a failure, not a skip. */
export const redisServerAvailable = () =>
  presentOrSkip(
    spawnSync(REDIS_SERVER, ['--version']).status === 0
      ? null
      : `${REDIS_SERVER} not found (apt install redis-server)`,
  );

export interface PrivateRedis {
  url: string;
  /** Starts the server (again) on the same port; resolves when it accepts connections. */
  start(): Promise<void>;
  /** Sends the signal (SIGKILL by default) and waits for the process to exit. */
  kill(signal?: NodeJS.Signals): Promise<void>;
}

/**
 * A redis-server of the test's own on a free port, without persistence, so it can be killed and restarted
 * without touching the machine's shared Redis on 6379.
 */
export async function startPrivateRedis(): Promise<PrivateRedis> {
  const port = await freePort();
  let child: ChildProcess | undefined;
  let exited: Promise<void> = Promise.resolve();

  async function start() {
    const proc = spawn(
      REDIS_SERVER,
      ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    child = proc;
    exited = new Promise((resolve) => proc.once('exit', () => resolve()));
    let output = '';
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`redis-server not ready in 10 s:\n${output}`)), 10_000);
      const onData = (d: Buffer) => {
        output += d;
        if (output.includes('Ready to accept connections')) {
          clearTimeout(timer);
          resolve();
        }
      };
      proc.stdout?.on('data', onData);
      proc.stderr?.on('data', onData);
      proc.once('exit', (code) => {
        clearTimeout(timer);
        reject(new Error(`redis-server exited with ${code}:\n${output}`));
      });
    });
  }

  async function kill(signal: NodeJS.Signals = 'SIGKILL') {
    if (child && child.exitCode === null && child.signalCode === null) child.kill(signal);
    await exited;
  }

  await start();
  return { url: `redis://127.0.0.1:${port}`, start, kill };
}
