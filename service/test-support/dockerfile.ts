import { exec } from 'node:child_process';
import {
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  realpathSync,
  rmSync,
  statSync,
  symlinkSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, dirname, join, relative } from 'node:path';
import { promisify } from 'node:util';

/*
 * The Dockerfile's stages built into temp folders, without a Docker engine: every instruction is carried out as
 * written (ARG, FROM, WORKDIR, COPY with --from and globs, ENV, USER, EXPOSE, CMD, and RUN through sh), except
 * `npm ci`, which would download every package: its tree is taken from the repository's install instead, the
 * production part of it (as the lockfile marks it) for `npm ci --omit=dev`.
 */

export interface Stage {
  name: string | undefined;
  image: string;
  /** The stage's WORKDIR in the image. */
  workdir: string;
  /** That folder on this machine. */
  root: string;
  env: Record<string, string>;
  user: string | undefined;
  expose: number[];
  cmd: string[] | undefined;
  /** What each `npm ci` installed: 'all', or 'production' for --omit=dev. */
  installs: ('all' | 'production')[];
}

export interface Instruction {
  keyword: string;
  args: string;
}

/** The Dockerfile's instructions, comments and blank lines left out, continuation lines joined. */
export function instructions(dockerfile: string): Instruction[] {
  const joined = dockerfile.replace(/\\\n/g, ' ');
  return joined
    .split('\n')
    .map((line) => line.trim())
    .filter((line) => line !== '' && !line.startsWith('#'))
    .map((line) => {
      const [keyword = '', ...rest] = line.split(/\s+/);
      return { keyword: keyword.toUpperCase(), args: rest.join(' ') };
    });
}

interface LockedPackage {
  dev?: boolean;
  os?: string[];
  cpu?: string[];
}

/** Whether an `os` or `cpu` list of a package admits this machine's value (npm's rule: `!x` excludes x). */
const admits = (list: string[] | undefined, value: string) =>
  !list || (list.some((v) => !v.startsWith('!')) ? list.includes(value) : !list.includes(`!${value}`));

/**
 * The packages `npm ci --omit=dev` installs at the top of node_modules (`hono`, `@grpc/grpc-js`), read from the
 * lockfile as npm reads it: every package not marked `dev`, those for another platform left out. Nested copies
 * come with the folder of the package that holds them.
 */
export function productionPackages(repository: string): string[] {
  const lock = JSON.parse(readFileSync(join(repository, 'package-lock.json'), 'utf8')) as {
    lockfileVersion: number;
    packages: Record<string, LockedPackage>;
  };
  if (lock.lockfileVersion < 2)
    throw new Error('package-lock.json: lockfile version 2 or later is read here');
  return Object.entries(lock.packages)
    .filter(([path]) => path.startsWith('node_modules/') && !path.includes('/node_modules/', 1))
    .filter(([, p]) => !p.dev && admits(p.os, process.platform) && admits(p.cpu, process.arch))
    .map(([path]) => path.slice('node_modules/'.length))
    .sort();
}

/** Docker's glob for one path: `*` within a name, no other wildcard. */
function expand(context: string, source: string): string[] {
  if (!source.includes('*')) return [source];
  const dir = dirname(source);
  const pattern = new RegExp(
    `^${basename(source)
      .replace(/[.+?^${}()|[\]\\]/g, '\\$&')
      .replace(/\*/g, '.*')}$`,
  );
  return readdirSync(join(context, dir))
    .filter((name) => pattern.test(name))
    .map((name) => join(dir, name));
}

/**
 * Builds every stage of `dockerfile` from `context`; the last stage is the image. RUN lines run asynchronously: a
 * compile of a minute must not stall the test worker's event loop (Vitest gives up on a worker silent for 60 s).
 */
export async function buildStages(
  context: string,
  dockerfile = join(context, 'Dockerfile'),
): Promise<Stage[]> {
  const args: Record<string, string> = {};
  const substitute = (text: string) => text.replace(/\$\{(\w+)\}|\$(\w+)/g, (_, a, b) => args[a ?? b] ?? '');
  const stages: Stage[] = [];
  let stage: Stage | undefined;
  const current = (keyword: string) => {
    if (!stage) throw new Error(`${keyword} before FROM`);
    return stage;
  };
  /** A path of the image, below the stage's WORKDIR (the only folder built), as a path of this machine. */
  const local = (of: Stage, path: string) => {
    const absolute = path.startsWith('/') ? path : join(of.workdir, path);
    if (absolute !== of.workdir && !absolute.startsWith(`${of.workdir}/`))
      throw new Error(`${path}: only paths below WORKDIR ${of.workdir} are built here`);
    return join(of.root, relative(of.workdir, absolute));
  };
  try {
    for (const instruction of instructions(readFileSync(dockerfile, 'utf8'))) await carryOut(instruction);
  } catch (err) {
    // Nothing is left behind by a build that fails (the links into node_modules are removed, not followed).
    for (const built of stages) rmSync(built.root, { recursive: true, force: true });
    throw err;
  }
  return stages;

  async function carryOut({ keyword, args: raw }: Instruction) {
    const line = substitute(raw);
    if (keyword === 'ARG') {
      const [name, value] = raw.split('=');
      if (name && value !== undefined && !(name in args)) args[name] = value;
    } else if (keyword === 'FROM') {
      const [image = '', as, name] = line.split(/\s+/);
      stage = {
        name: as?.toUpperCase() === 'AS' ? name : undefined,
        image,
        workdir: '/',
        root: mkdtempSync(join(tmpdir(), 'delay-image-')),
        env: {},
        user: undefined,
        expose: [],
        cmd: undefined,
        installs: [],
      };
      stages.push(stage);
    } else if (keyword === 'WORKDIR') {
      const s = current(keyword);
      if (s.workdir !== '/') throw new Error('one WORKDIR per stage is built here');
      s.workdir = line;
    } else if (keyword === 'COPY') {
      const s = current(keyword);
      const words = line.split(/\s+/);
      const fromName = words.find((w) => w.startsWith('--from='))?.slice('--from='.length);
      const paths = words.filter((w) => !w.startsWith('--'));
      const destination = paths.pop() as string;
      const fromStage = fromName ? stages.find((other) => other.name === fromName) : undefined;
      if (fromName && !fromStage) throw new Error(`COPY --from=${fromName}: no such stage`);
      // --from paths are the other stage's (from its root, as Docker reads them); others the context's.
      const sources = fromStage
        ? paths.map((p) => local(fromStage, join('/', p)))
        : paths.flatMap((p) => expand(context, p)).map((p) => join(context, p));
      const target = local(s, destination);
      const intoFolder = destination.endsWith('/') || sources.length > 1;
      for (const from of sources) {
        if (!existsSync(from)) throw new Error(`COPY ${line}: ${from} does not exist`);
        // A folder's contents are copied, not the folder; a file goes into a folder when the target is one.
        const to = statSync(from).isDirectory() ? target : intoFolder ? join(target, basename(from)) : target;
        mkdirSync(dirname(to), { recursive: true });
        cpSync(from, to, { recursive: true });
      }
    } else if (keyword === 'RUN') {
      const s = current(keyword);
      if (/^npm ci\b/.test(line)) {
        const production = /--omit=dev\b/.test(line);
        install(context, s.root, production);
        s.installs.push(production ? 'production' : 'all');
      } else {
        await promisify(exec)(line, {
          cwd: s.root,
          env: { ...process.env, ...s.env },
          maxBuffer: 64 * 1024 * 1024,
        });
      }
    } else if (keyword === 'ENV') {
      const [name = '', value = ''] = line.split('=');
      current(keyword).env[name] = value;
    } else if (keyword === 'USER') {
      current(keyword).user = line;
    } else if (keyword === 'EXPOSE') {
      current(keyword).expose.push(...line.split(/\s+/).map(Number));
    } else if (keyword === 'CMD') {
      current(keyword).cmd = JSON.parse(line) as string[];
    } else {
      throw new Error(`${keyword}: not built here`);
    }
  }
}

/**
 * `npm ci` from the repository's install: the whole tree linked, or one link per production package. A linked
 * package resolves its own dependencies from its real folder; the app's imports see only the links.
 */
function install(context: string, root: string, production: boolean) {
  const modules = realpathSync(join(context, 'node_modules'));
  if (!production) {
    symlinkSync(modules, join(root, 'node_modules'));
    return;
  }
  for (const name of productionPackages(context)) {
    const link = join(root, 'node_modules', name);
    mkdirSync(dirname(link), { recursive: true });
    symlinkSync(join(modules, name), link);
  }
}
