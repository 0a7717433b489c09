import { spawn } from 'node:child_process';
import {
  copyFileSync,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseAllDocuments, parse as parseYaml } from 'yaml';
import { loadConfig } from './service/config/config.js';
import { presentOrSkip } from './service/test-support/availability.js';
import { freshPostgres, postgresAvailable } from './service/test-support/databases.js';
import { buildStages, type Stage } from './service/test-support/dockerfile.js';
import { startFakeOpenWeatherMap } from './service/test-support/fake-openweathermap.js';
import { tempDir } from './service/test-support/harness.js';
import { type ServiceProcess, startService, waitForReady } from './service/test-support/process.js';

/*
 * The commands of docs/runbook.md (its shell blocks and every inline command) and the shell blocks of the README and
 * of the reference pages it leads to (PAGES),
 * run as written wherever they can run on a development machine: against the service compiled and started as the
 * image starts it (service/test-support/dockerfile.ts), its flags in a temp file, its database a Postgres of its
 * own. The runbook's tools run twice: with its local definitions (npm run, tsx) and with its compose and
 * Kubernetes definitions, whose `docker compose exec service` / `kubectl exec ... --` prefix is replaced by the
 * image's folder, so that the compiled command on-call types is the one run. A command that cannot run here is
 * listed with its reason (printed) and checked: the names it uses exist in deploy/kubernetes and
 * docker-compose.yml, the compiled file it runs exists in the image, the npm script it names exists.
 */

interface Command {
  /** Where it is written: file and line. */
  at: string;
  text: string;
}

const RUNBOOK = 'docs/runbook.md';
const TOOLS = ['rollout', 'report', 'weather', 'drift'] as const;
/** The first words that make an inline code span a command (the rest are PromQL, metric names, paths). */
const COMMAND_WORDS = new Set([
  ...TOOLS,
  'curl',
  'npm',
  'npx',
  'kubectl',
  'docker',
  'git',
  'psql',
  'pg_dump',
  'node',
]);
/** A model version besides the committed gbt-v2, for the commands that name one (`VERSION`, `gbt-v3`). */
const OTHER_VERSION = 'gbt-v3';

/** Why a command does not run here; the first match wins. */
const NOT_HERE: [RegExp, string][] = [
  [/^kubectl /, 'needs a Kubernetes cluster (its names are checked against deploy/kubernetes)'],
  [/^docker compose /, 'needs a Docker engine (its services are checked against docker-compose.yml)'],
  [/^npm start$/, 'the service itself: the one this test runs is started as the image starts it'],
  [
    /^npm ci && npm start$/,
    'installs the packages; the service this test starts is that, compiled (dockerfile.test.ts)',
  ],
  [/^npm test$/, 'the whole suite, this file included'],
  [/^(\w+=\S+ )*\.ci\/run$/, 'CI: installs the parts, then the whole suite, this file included'],
  [/^npx vitest run /, 'a file of the suite, which runs it'],
  [/^npm install --prefix /, 'downloads Node from the npm registry'],
  [
    /^npx drizzle-kit generate$/,
    'writes the next migration after a schema change (db tests check the migrations)',
  ],
  [
    /^npm run (train|evaluate|baselines|retrain)\b/,
    'trains or scores a model with Python and writes models/: minutes (models/*.test.ts run it)',
  ],
  [
    /^(\w+=\S+ )*npm run (bench|measure)/,
    'a benchmark or a measurement: minutes (.ci/run runs the measurements)',
  ],
  [
    /^npm run k8s:generate$/,
    'rewrites deploy/kubernetes/base/generated (kubernetes.test.ts checks it is current)',
  ],
  [/^git /, "changes the checkout's Git state"],
  [/^(pg_dump|pg_restore) /, 'reads or replaces the production database'],
  [/^node --import tsx service\/main\.ts$/, 'quoted as the start to avoid (without --no-memory-reducer)'],
  [/\.\.\.|<\w+>/, 'a placeholder to fill in'],
];

/** Fenced blocks of a language, with the line their body starts on. */
function fencedBlocks(markdown: string, language: string): { line: number; body: string }[] {
  const blocks: { line: number; body: string }[] = [];
  const lines = markdown.split('\n');
  for (let i = 0; i < lines.length; i++) {
    if (lines[i] !== `\`\`\`${language}`) continue;
    const end = lines.indexOf('```', i + 1);
    blocks.push({ line: i + 2, body: lines.slice(i + 1, end).join('\n') });
    i = end;
  }
  return blocks;
}

/** A shell block's commands with their line in it: quoted newlines and backslash continuations kept, comments left out. */
function shellCommands(body: string): { offset: number; text: string }[] {
  const commands: { offset: number; text: string }[] = [];
  let current = '';
  let line = 0;
  let startLine = 0;
  let quote: string | null = null;
  const end = () => {
    if (current.trim()) commands.push({ offset: startLine, text: current.trim().replace(/ {2,}/g, ' ') });
    current = '';
  };
  for (let i = 0; i < body.length; i++) {
    const c = body[i] as string;
    if (c === '\n') line++;
    if (current.trim() === '') startLine = line;
    if (quote) {
      current += c;
      if (c === quote) quote = null;
    } else if (c === "'" || c === '"') {
      quote = c;
      current += c;
    } else if (c === '\\' && body[i + 1] === '\n') {
      current += ' ';
      line++;
      i++;
    } else if (c === '#' && (current === '' || /\s$/.test(current))) {
      while (i + 1 < body.length && body[i + 1] !== '\n') i++;
    } else if (c === '\n') end();
    else current += c;
  }
  end();
  return commands;
}

/** Whether the service logs a message starting with this text (`rollout changed`): a quoted log line, not a command. */
function loggedBy(text: string): boolean {
  const sources = (dir: string): string[] =>
    readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
      e.isDirectory() ? sources(join(dir, e.name)) : e.name.endsWith('.ts') ? [join(dir, e.name)] : [],
    );
  return sources('service').some((file) => readFileSync(file, 'utf8').includes(`'${text}`));
}

function commandsOf(file: string, { inline }: { inline: boolean }): Command[] {
  const markdown = readFileSync(file, 'utf8');
  const lineOf = (index: number) => markdown.slice(0, index).split('\n').length;
  // The topology blocks' definitions (exports, functions) are read and used by the tests below, not run alone.
  const commands: Command[] = fencedBlocks(markdown, 'sh').flatMap(({ line, body }) =>
    shellCommands(body)
      .filter(({ text }) => !/^export |^\w+\(\) \{/.test(text))
      .map(({ offset, text }) => ({ at: `${file}:${line + offset}`, text })),
  );
  if (inline) {
    const prose = markdown.replace(/^```[\s\S]*?^```$/gm, (block) => block.replace(/`/g, ' '));
    for (const m of prose.matchAll(/`([^`]+)`/g)) {
      const text = (m[1] as string).replace(/\s+/g, ' ').trim();
      const words = text.split(' ');
      if (words.length > 1 && COMMAND_WORDS.has(words[0] as string) && !loggedBy(text))
        commands.push({ at: `${file}:${lineOf(m.index)}`, text });
    }
  }
  return commands;
}

/** The runbook's three definitions of where on-call stands, by what runs the tools. */
function topologies() {
  const blocks = fencedBlocks(readFileSync(RUNBOOK, 'utf8'), 'sh').map((b) => b.body);
  const find = (marker: RegExp) => {
    const found = blocks.filter((b) => marker.test(b) && /^export SERVICE=/m.test(b));
    expect(found, String(marker)).toHaveLength(1);
    return found[0] as string;
  };
  return {
    local: find(/npm run -s rollout/),
    compose: find(/docker compose exec/),
    kubernetes: find(/kubectl .* exec /),
  };
}

/** What a topology block runs for each tool: the function's body before `"$@"`. */
function toolDefinitions(block: string): Record<(typeof TOOLS)[number], string> {
  return Object.fromEntries(
    TOOLS.map((tool) => {
      const m = new RegExp(`^${tool}\\(\\) \\{ (.+) "\\$@"; \\}$`, 'm').exec(block);
      expect(m, `${tool} defined`).not.toBeNull();
      return [tool, (m as RegExpExecArray)[1] as string];
    }),
  ) as Record<(typeof TOOLS)[number], string>;
}

function yamlTexts(dir = 'deploy/kubernetes'): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory()
      ? yamlTexts(join(dir, e.name))
      : /\.ya?ml$/.test(e.name)
        ? [readFileSync(join(dir, e.name), 'utf8')]
        : [],
  );
}

/** Every resource the Kubernetes files define, as `Kind/name`, and the deployment's containers. */
function kubernetesNames() {
  const names = new Set<string>();
  const containers = new Set<string>();
  for (const text of yamlTexts())
    for (const doc of parseAllDocuments(text)) {
      const r = doc.toJS() as {
        kind?: string;
        metadata?: { name?: string };
        spec?: { template?: { spec?: { containers?: { name: string }[] } } };
      } | null;
      if (!r?.kind || !r.metadata?.name) continue;
      names.add(`${r.kind}/${r.metadata.name}`);
      for (const c of r.spec?.template?.spec?.containers ?? []) containers.add(c.name);
    }
  return { names, containers };
}

/** The names a kubectl command uses that deploy/kubernetes does not define. */
function unknownKubernetesNames(command: string): string[] {
  const { names, containers } = kubernetesNames();
  // A Secret is named by what reads it: `{ name: X, key: Y }` (secretKeyRef, urlSecret) in the manifests.
  const secretNames = new Set(
    [
      ...yamlTexts()
        .join('\n')
        .matchAll(/\bname: ([\w-]+), key:/g),
    ].map((m) => m[1]),
  );
  const missing: string[] = [];
  const want = (ok: boolean, what: string) => {
    if (!ok) missing.push(what);
  };
  for (const m of command.matchAll(/(?:^| )-n ([\w-]+)/g))
    want(names.has(`Namespace/${m[1]}`), `namespace ${m[1]}`);
  for (const m of command.replace(/ -k \S+/g, '').matchAll(/ deploy\/([\w-]+)/g))
    want(names.has(`Deployment/${m[1]}`), `deployment ${m[1]}`);
  for (const m of command.matchAll(/ svc\/([\w-]+)/g)) want(names.has(`Service/${m[1]}`), `service ${m[1]}`);
  for (const m of command.matchAll(/ -c ([\w-]+)/g))
    want(containers.has(m[1] as string), `container ${m[1]}`);
  for (const m of command.matchAll(/featureflags?[ /]([\w-]+)/g))
    want(names.has(`FeatureFlag/${m[1]}`), `FeatureFlag ${m[1]}`);
  for (const m of command.matchAll(/secret generic ([\w-]+)/g)) want(secretNames.has(m[1]), `secret ${m[1]}`);
  for (const m of command.matchAll(/serviceaccount:([\w-]+):([\w-]+)/g)) {
    want(names.has(`Namespace/${m[1]}`), `namespace ${m[1]}`);
    want(names.has(`ServiceAccount/${m[2]}`), `service account ${m[2]}`);
  }
  for (const m of command.matchAll(/ -k ([\w/.-]+)/g))
    want(existsSync(join(m[1] as string, 'kustomization.yaml')), `kustomization ${m[1]}`);
  return missing;
}

const composeServices = () =>
  Object.keys((parseYaml(readFileSync('docker-compose.yml', 'utf8')) as { services: object }).services);

/** Whether a command runs here, or why not. */
function verdict(text: string): { run: true } | { run: false; reason: string } {
  for (const [pattern, reason] of NOT_HERE) if (pattern.test(text)) return { run: false, reason };
  return { run: true };
}

const runbookCommands = commandsOf(RUNBOOK, { inline: true });
/** The README and the pages holding the commands it leads to: their shell blocks are read, and run where they can. */
const PAGES = [
  'README.md',
  'docs/operations.md',
  'docs/rollout-and-rollback.md',
  'docs/testing.md',
  'models/README.md',
];
const readmeCommands = PAGES.flatMap((page) => commandsOf(page, { inline: false }));
const all = [...runbookCommands, ...readmeCommands];

describe('the runbook and README commands, read', () => {
  it('reads every page of the README, docs/, models/ and deploy/ that holds a shell block', () => {
    const markdown = (dir: string): string[] =>
      readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
        e.isDirectory() ? markdown(join(dir, e.name)) : e.name.endsWith('.md') ? [join(dir, e.name)] : [],
      );
    const withShell = ['README.md', ...markdown('docs'), ...markdown('models'), ...markdown('deploy')].filter(
      (page) => fencedBlocks(readFileSync(page, 'utf8'), 'sh').length > 0,
    );
    expect([RUNBOOK, ...PAGES]).toEqual(expect.arrayContaining(withShell));
  });

  it('define $SERVICE, $METRICS and the tools once per topology, on the ports the service and deployments use', () => {
    const config = loadConfig({});
    const { local, compose, kubernetes } = topologies();
    const defined = fencedBlocks(readFileSync(RUNBOOK, 'utf8'), 'sh').filter((b) =>
      /\bSERVICE=/.test(b.body),
    );
    expect(defined).toHaveLength(3);
    for (const block of [local, compose, kubernetes]) {
      expect(block).toContain(
        `export SERVICE=http://127.0.0.1:${config.port} METRICS=http://127.0.0.1:${config.metricsPort}`,
      );
      toolDefinitions(block);
    }
    // What the laptop's 8080 and 9464 lead to: compose's first published port, the Service's named ports.
    const service = (
      parseYaml(readFileSync('docker-compose.yml', 'utf8')) as {
        services: { service: { ports: string[] } };
      }
    ).services.service;
    expect(service.ports.some((p) => p.startsWith(`${config.port}-`))).toBe(true);
    expect(service.ports.some((p) => p.includes(`:${config.metricsPort}-`))).toBe(true);
    expect(kubernetes).toMatch(
      new RegExp(`port-forward svc/delay-prediction ${config.port}:http ${config.metricsPort}:metrics &`),
    );
    for (const line of kubernetes.split('\n')) expect(unknownKubernetesNames(line), line).toEqual([]);
  });

  it('runs the compiled tools in compose and on Kubernetes, never npm or tsx (the image has neither)', () => {
    const { compose, kubernetes } = topologies();
    const services = composeServices();
    for (const [block, prefix] of [
      [compose, /^docker compose exec ([\w-]+) node service\/cli\/[\w-]+\.js$/],
      [kubernetes, /^kubectl -n [\w-]+ exec deploy\/[\w-]+ -c [\w-]+ -- node service\/cli\/[\w-]+\.js$/],
    ] as const)
      for (const body of Object.values(toolDefinitions(block))) {
        expect(body).toMatch(prefix);
        const m = /^docker compose exec ([\w-]+)/.exec(body);
        if (m) expect(services).toContain(m[1]);
      }
    for (const { at, text } of all.filter((c) => /^(kubectl|docker compose) .*\bexec \S/.test(c.text)))
      expect(text, at).toMatch(/ -- node service\/cli\/[\w-]+\.js|exec [\w-]+ node service\/cli\/[\w-]+\.js/);
  });

  it("states one soak, the automatic promoter's", () => {
    const runbook = readFileSync(RUNBOOK, 'utf8');
    const soak =
      /\*\*Soak\.\*\* Each rollout step \(10%, 25%, 50%, 100%\) holds (\d+) hours, the automatic promoter's `AUTO_PROMOTE_SOAK_S`\n?\s*\((\d+)\)/.exec(
        runbook,
      );
    expect(soak).not.toBeNull();
    const promoter = loadConfig({
      AUTO_PROMOTE: 'true',
      PROMETHEUS_URL: 'http://prometheus:9090',
    }).autoPromote;
    const seconds = (promoter?.soakMs ?? 0) / 1000;
    expect(Number(soak?.[1]) * 3600).toBe(seconds);
    expect(Number(soak?.[2])).toBe(seconds);
    expect(readFileSync('docs/configuration.md', 'utf8')).toContain(
      `| \`AUTO_PROMOTE_SOAK_S\` | \`${seconds}\` |`,
    );
  });

  it('names only npm scripts that exist, and says why each command it does not run cannot run here', () => {
    const scripts = Object.keys(JSON.parse(readFileSync('package.json', 'utf8')).scripts);
    const services = composeServices();
    const skipped: string[] = [];
    for (const { at, text } of all) {
      for (const m of text.matchAll(/npm run (?:-s )?([a-z0-9:-]+)/g))
        expect(scripts, `${at}: ${text}`).toContain(m[1]);
      const v = verdict(text);
      if (v.run) continue;
      skipped.push(`${at}: ${text}\n    not run: ${v.reason}`);
      if (text.startsWith('kubectl ')) expect(unknownKubernetesNames(text), `${at}: ${text}`).toEqual([]);
      const compose = /^docker compose (?:exec|ps|logs|restart) ([\w-]+)/.exec(text);
      if (compose) expect(services, `${at}: ${text}`).toContain(compose[1]);
    }
    console.log(`commands not run here:\n${skipped.join('\n')}`);
    console.log(
      `commands run here:\n${all
        .filter((c) => verdict(c.text).run)
        .map((c) => `${c.at}: ${c.text}`)
        .join('\n')}`,
    );
    expect(all.filter((c) => verdict(c.text).run).length).toBeGreaterThan(15);
  });
});

const hasPostgres = await postgresAvailable();

describe.skipIf(!presentOrSkip(hasPostgres ? null : 'Postgres at 127.0.0.1:5432'))(
  'the runbook and README commands, run against the compiled service',
  () => {
    let stages: Stage[] = [];
    let image: Stage;
    let service: ServiceProcess;
    let database: Awaited<ReturnType<typeof freshPostgres>>;
    let weatherApi: Awaited<ReturnType<typeof startFakeOpenWeatherMap>>;
    const dir = tempDir('delay-runbook-');
    const flags = join(dir, 'flags.json');
    const models = join(dir, 'models');
    const committedFlags = readFileSync('flagd/flags.json', 'utf8');
    let env: Record<string, string> = {};

    beforeAll(async () => {
      stages = await buildStages('.');
      image = stages.at(-1) as Stage;
      database = await freshPostgres();
      weatherApi = await startFakeOpenWeatherMap();
      // gbt-v2 and a second version for the commands that name one (the card names its own version).
      mkdirSync(models, { recursive: true });
      for (const ext of ['onnx', 'json']) copyFileSync(`models/gbt-v2.${ext}`, join(models, `gbt-v2.${ext}`));
      copyFileSync('models/gbt-v2.onnx', join(models, `${OTHER_VERSION}.onnx`));
      const card = JSON.parse(readFileSync('models/gbt-v2.json', 'utf8'));
      writeFileSync(
        join(models, `${OTHER_VERSION}.json`),
        JSON.stringify({
          ...card,
          version: OTHER_VERSION,
          onnx: { ...card.onnx, file: `${OTHER_VERSION}.onnx` },
        }),
      );
      writeFileSync(flags, committedFlags);
      const shared = {
        FLAGS_FILE: flags,
        MODELS_DIR: models,
        DATABASE_URL: database.url,
        OPENWEATHER_API_KEY: 'runbook-test-key',
        OPENWEATHER_BASE_URL: weatherApi.url,
        // The service requires it on the reports, and on-call's shell holds it: a call without it fails (401).
        REPORTS_TOKEN: 'runbook-reports-token-0123',
      };
      const [, ...args] = image.cmd ?? [];
      service = await startService({ ...image.env, ...shared }, { args, cwd: image.root });
      await waitForReady(service, 120_000);
      env = {
        PATH: process.env.PATH ?? '',
        HOME: process.env.HOME ?? dir,
        DATA_DIR: join(dir, 'data'),
        ...shared,
      };
    }, 300_000);
    afterAll(async () => {
      if (service) expect(await service.stop('SIGTERM'), service.output()).toBe(0);
      await weatherApi?.close();
      await database?.close();
      for (const stage of stages) rmSync(stage.root, { recursive: true, force: true });
      rmSync(dir, { recursive: true, force: true });
    });

    /**
     * Runs one command in bash after `prelude`, on the committed flags, failing on an HTTP error answer. Not
     * spawnSync: the OpenWeatherMap stand-in answers from this process.
     */
    const run = async (prelude: string, text: string, extraEnv: Record<string, string> = {}) => {
      writeFileSync(flags, committedFlags);
      const script = [
        'set -o pipefail',
        'curl() { command curl --fail-with-body --show-error "$@"; }',
        prelude,
        `export SERVICE=http://127.0.0.1:${service.port} METRICS=http://127.0.0.1:${service.metricsPort}`,
        // The checkout's models/ is this test's copy, which holds OTHER_VERSION too.
        text
          .replaceAll('VERSION', OTHER_VERSION)
          .replace(/\blocalhost:8080\b/g, `127.0.0.1:${service.port}`)
          .replace(/ --dir models\b/g, ' --dir "$MODELS_DIR"'),
      ].join('\n');
      const child = spawn('bash', ['-c', script], { env: { ...env, ...extraEnv }, timeout: 60_000 });
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (d) => {
        stdout += d;
      });
      child.stderr.on('data', (d) => {
        stderr += d;
      });
      const status = await new Promise<number | null>((resolve) => child.once('close', resolve));
      return { status, stdout, stderr };
    };

    const runnable = (commands: Command[]) => commands.filter((c) => verdict(c.text).run);

    /** Each command once: the runbook's `rollout status` is the README's `npm run rollout -- status`. */
    const distinct = (commands: Command[]) => {
      const seen = new Map<string, Command>();
      for (const c of commands) {
        const [word, ...rest] = c.text.split(' ');
        const key = (TOOLS as readonly string[]).includes(word as string)
          ? `npm run ${word} -- ${rest.join(' ')}`
          : c.text;
        if (!seen.has(key)) seen.set(key, c);
      }
      return [...seen.values()];
    };

    it("runs the runbook's and the README's commands, the tools with the runbook's local definitions (npm run, tsx)", async () => {
      const { local } = topologies();
      const commands = distinct(runnable([...runbookCommands, ...readmeCommands]));
      expect(commands.length).toBeGreaterThan(20);
      for (const { at, text } of commands) {
        const result = await run(local, text);
        expect(result.status, `${at}: ${text}\n${result.stdout}\n${result.stderr}`).toBe(0);
      }
    }, 600_000);

    it("runs the tools as compose and Kubernetes define them, on the image's compiled JavaScript", async () => {
      // The container's part: the command after the exec prefix, the same in both, run in the image's folder.
      const inImage = (block: string) =>
        Object.entries(toolDefinitions(block)).map(([tool, body]) => [
          tool,
          body.replace(/^.* (?=node service\/cli\/)/, ''),
        ]);
      const { compose, kubernetes } = topologies();
      expect(inImage(kubernetes)).toEqual(inImage(compose));
      const prelude = inImage(compose)
        .map(([tool, command]) => {
          expect(existsSync(join(image.root, (command as string).split(' ')[1] as string)), command).toBe(
            true,
          );
          return `${tool}() { (cd '${image.root}' && ${command} "$@"); }`;
        })
        .join('\n');
      const tools = distinct(runnable(runbookCommands)).filter((c) =>
        (TOOLS as readonly string[]).includes(c.text.split(' ')[0] as string),
      );
      expect(tools.length).toBeGreaterThan(5);
      for (const { at, text } of tools) {
        const result = await run(prelude, text, image.env);
        expect(result.status, `${at}: ${text}\n${result.stdout}\n${result.stderr}`).toBe(0);
      }
    }, 600_000);

    it('audits a manual disable when DATABASE_URL is set, as the runbook says', async () => {
      const { local } = topologies();
      const audited = await run(local, 'rollout disable && rollout status');
      expect(audited.status, audited.stderr).toBe(0);
      const status = JSON.parse(audited.stdout.slice(audited.stdout.indexOf('{')));
      expect(status).toMatchObject({ ml_percentage: 0, audit: 'postgres' });
      expect(status.recent_changes[0]).toMatchObject({ actor: expect.any(String) });
      const unaudited = await run(local, 'unset DATABASE_URL; rollout status');
      expect(unaudited.status, unaudited.stderr).toBe(0);
      expect(JSON.parse(unaudited.stdout)).toMatchObject({ audit: 'not recorded (DATABASE_URL unset)' });
    }, 120_000);
  },
);
