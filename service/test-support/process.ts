import { type ChildProcess, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { cpSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => resolve(typeof address === 'object' && address ? address.port : 0));
    });
  });
}

const MIGRATIONS = 'db/migrations';

/**
 * A fresh PGlite DATA_DIR with the migrations already applied: a copy of a template built once per set of
 * migrations (keyed by their hash, shared by every test file and by parallel runs), since a fresh PGlite
 * folder takes seconds to migrate, tens of seconds on a loaded machine, before each service is ready. A test
 * about a first start passes a new empty folder instead (main.test.ts does).
 */
export async function migratedDataDir(): Promise<string> {
  const hash = createHash('sha256');
  for (const name of readdirSync(MIGRATIONS, { recursive: true, encoding: 'utf8' }).sort()) {
    if (name.endsWith('.sql') || name.endsWith('.json'))
      hash.update(name).update(readFileSync(join(MIGRATIONS, name)));
  }
  const template = join(tmpdir(), `delay-pglite-template-${hash.digest('hex').slice(0, 16)}`);
  try {
    readdirSync(template);
  } catch {
    const building = mkdtempSync(join(tmpdir(), 'delay-pglite-building-'));
    const { openDatabase } = await import('../storage/database.js');
    await (await openDatabase({ dataDir: building })).close();
    try {
      renameSync(building, template);
    } catch {
      // Another run built it first: theirs serves.
      rmSync(building, { recursive: true, force: true });
    }
  }
  const dir = mkdtempSync(join(tmpdir(), 'delay-data-'));
  cpSync(template, dir, { recursive: true });
  return dir;
}

export interface ServiceProcess {
  child: ChildProcess;
  port: number;
  metricsPort: number;
  output: () => string;
  exited: Promise<number | null>;
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

/** The arguments `npm start` passes to node (package.json's start script, `node` left out). */
export function startArguments(): string[] {
  const { scripts } = JSON.parse(readFileSync('package.json', 'utf8')) as { scripts: { start: string } };
  const [node, ...args] = scripts.start.split(/\s+/);
  if (node !== 'node') throw new Error(`npm start runs ${node}, not node`);
  return args;
}

export interface StartOptions {
  /** The node binary: the one running the caller by default. */
  node?: string;
  /** Node's arguments: `npm start`'s by default. */
  args?: string[];
  /** The working directory: the repository by default. */
  cwd?: string;
}

/**
 * Starts `service/main.ts` as `npm start` does (or what `options` say instead), with the given environment on
 * top of a clean one.
 */
export async function startService(
  env: Record<string, string> = {},
  { node = process.execPath, args = startArguments(), cwd }: StartOptions = {},
): Promise<ServiceProcess> {
  const port = await freePort();
  const metricsPort = await freePort();
  const child = spawn(node, args, {
    ...(cwd ? { cwd } : {}),
    env: {
      PATH: process.env.PATH ?? '',
      HOST: '127.0.0.1',
      PORT: String(port),
      METRICS_PORT: String(metricsPort),
      DATA_DIR:
        env.DATA_DIR ??
        (env.DATABASE_URL ? mkdtempSync(join(tmpdir(), 'delay-data-')) : await migratedDataDir()),
      ...env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout?.on('data', (d) => {
    output += d;
  });
  child.stderr?.on('data', (d) => {
    output += d;
  });
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return {
    child,
    port,
    metricsPort,
    output: () => output,
    exited,
    async stop(signal = 'SIGTERM') {
      if (child.exitCode === null) child.kill(signal);
      return exited;
    },
  };
}

// A start compiles the TypeScript first (tsx): on a loaded machine that alone has taken 28 s.
export async function waitForReady(service: ServiceProcess, timeoutMs = 60_000) {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (service.child.exitCode !== null) throw new Error(`service exited early:\n${service.output()}`);
    try {
      const res = await fetch(`http://127.0.0.1:${service.port}/readyz`);
      if (res.status === 200) return;
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`service not ready after ${timeoutMs} ms:\n${service.output()}`);
}

/** A reader of one `/metrics` scrape: `metric(name, labels)` sums the series of `name` whose labels include `labels`. */
export type MetricReading = (name: string, labels?: Record<string, string>) => number;

/** Scrapes a process's Prometheus endpoint; reading a name the process does not export throws. */
export async function scrapeMetrics(metricsPort: number): Promise<MetricReading> {
  const text = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
  const series: { name: string; labels: Record<string, string>; value: number }[] = [];
  for (const line of text.split('\n')) {
    const m = /^([A-Za-z_:][\w:]*)(?:\{(.*)\})?\s+(\S+)/.exec(line);
    if (!m) continue;
    const labels: Record<string, string> = {};
    for (const [, key, value] of (m[2] ?? '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g))
      labels[key as string] = value as string;
    series.push({ name: m[1] as string, labels, value: Number(m[3]) });
  }
  return (name, labels = {}) => {
    const named = series.filter((s) => s.name === name);
    if (named.length === 0) throw new Error(`${name} is not exported`);
    return named
      .filter((s) => Object.entries(labels).every(([k, v]) => s.labels[k] === v))
      .reduce((sum, s) => sum + s.value, 0);
  };
}

/** A JSON post to a service process, with `token` as its bearer when given. */
export function postTo(service: Pick<ServiceProcess, 'port'>, path: string, body: unknown, token?: string) {
  return fetch(`http://127.0.0.1:${service.port}${path}`, {
    method: 'POST',
    headers: {
      'content-type': 'application/json',
      ...(token ? { authorization: `Bearer ${token}` } : {}),
    },
    body: JSON.stringify(body),
  });
}

/** What Alertmanager posts to the rollback webhook: `alerts` firing on the rollback receiver. */
export function alertmanagerPayload(
  alerts: { labels: Record<string, string>; annotations?: Record<string, string>; fingerprint?: string }[],
) {
  return {
    version: '4',
    status: 'firing',
    receiver: 'rollback-webhook',
    alerts: alerts.map((a, i) => ({ status: 'firing', annotations: {}, fingerprint: `alert-${i}`, ...a })),
  };
}
