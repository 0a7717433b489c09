import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import type { Database } from '../storage/database.js';
import { cliActor, fail, startCli } from './cli.js';

/*
 * npm run rollout -- status | enable --percentage N | disable | promote | set-model VERSION
 *   | canary VERSION --percentage N | history
 *   [--json] [--reason TEXT]
 * Changes FLAGS_FILE through the same validated, atomic rewrite as the rollback webhook, and audits each change
 * in the database named by DATABASE_URL. The embedded PGlite belongs to the running service and is not opened.
 */
const usage =
  'npm run rollout -- status | enable --percentage N | disable | promote | set-model VERSION | canary VERSION --percentage N | history [--json] [--reason TEXT]';
const { command, operands, values, config } = startCli(
  usage,
  ['status', 'enable', 'disable', 'promote', 'set-model', 'canary', 'history'],
  { percentage: { type: 'string' }, json: { type: 'boolean', default: false }, reason: { type: 'string' } },
  { 'set-model': ['VERSION'], canary: ['VERSION'] },
);

/**
 * --percentage of enable and canary: a whole number from 0 to 100 in digits (an empty value is not 0);
 * undefined for the commands that take none.
 */
function percentageOption(): number | undefined {
  const value = values.percentage;
  if (command !== 'enable' && command !== 'canary') {
    if (value !== undefined) fail(`${command} takes no --percentage\nusage: ${usage}`);
    return undefined;
  }
  if (value === undefined)
    fail(`${command} needs --percentage N, a whole number from 0 to 100\nusage: ${usage}`);
  if (!/^\d{1,3}$/.test(value) || Number(value) > 100)
    fail(`--percentage must be a whole number from 0 to 100, got ${JSON.stringify(value)}`);
  return Number(value);
}
const percentage = percentageOption();

// The service's modules load once the arguments are known to be valid: a usage error answers without them.
const [
  { parseFlagConfig },
  { flagStoreFor },
  { currentModelVersion, nextStep },
  { checkModelPair, createModelStore },
  { createRolloutService },
  { openDatabase },
  { createLogger },
] = await Promise.all([
  import('../flags/flag-config.js'),
  import('../flags/flag-store.js'),
  import('../flags/flag-writer.js'),
  import('../models/model-store.js'),
  import('../rollout/rollout-service.js'),
  import('../storage/database.js'),
  import('../telemetry/logger.js'),
]);

const version = operands[0];
const file = resolve(config.flagsFile);
const logger = createLogger('warn');
const database: Database | undefined = config.database.url ? await openDatabase(config.database) : undefined;
const store = flagStoreFor(config.flagStore, logger);
/**
 * canary and set-model name only a version every replica can load: one registered in the model registry on
 * Postgres. Without DATABASE_URL, npm start's PGlite registry belongs to the running service, which registers the
 * pairs of its MODELS_DIR when the flag changes: a pair it would register is accepted.
 */
async function servable(name: string) {
  if (database) return createModelStore(database.db, database.kind).require(name);
  const dir = resolve(config.modelsDir);
  try {
    await checkModelPair(dir, name);
  } catch (err) {
    throw new Error(
      `no model ${JSON.stringify(name)} the service can load: without DATABASE_URL the service registers the model pairs of MODELS_DIR (${dir}), and this one is not one: ${(err as Error).message}`,
    );
  }
}
const { auditLatchKeeper, readAuditedLatch } = await import('../rollout/rollback-latch.js');
// The rollback latch lives in the shared audit table: without DATABASE_URL this tool can neither see nor lift it.
const latch = database ? auditLatchKeeper(database.db) : undefined;
const rollout = createRolloutService({ store, db: database?.db, logger, servable, latch });
const live = async () => parseFlagConfig(await store.read());
const who = (action: 'enable' | 'disable' | 'promote' | 'set-model' | 'canary', modelVersion?: string) => ({
  actor: cliActor(),
  action,
  reason: values.reason,
  modelVersion,
});

/** Whether the flag file differs from Git's HEAD, and the commands that bring the two in line. */
function gitDrift() {
  const git = (...args: string[]) => spawnSync('git', ['-C', dirname(file), ...args], { encoding: 'utf8' });
  const top = git('rev-parse', '--show-toplevel');
  if (top.status !== 0) return { tracked: false, differs_from_head: null, reconcile: null };
  const path = join(dirname(file), basename(file));
  const diff = git('diff', '--quiet', 'HEAD', '--', path);
  const differs = diff.status === 1;
  return {
    tracked: true,
    differs_from_head: differs,
    reconcile: differs
      ? {
          keep_the_live_rollout: `git add ${path} && git commit -m "rollout: record the live delay-model split"`,
          restore_git: `git checkout HEAD -- ${path}`,
        }
      : null,
  };
}

/**
 * On Kubernetes: whether the live FeatureFlag's flags differ from Git's flagd/flags.json (from which
 * npm run k8s:generate writes the FeatureFlag), as a GitOps tool would report it, and how to reconcile.
 */
async function featureFlagDrift() {
  const liveFlags = JSON.parse(await store.read()).flags;
  const gitFlags = JSON.parse(readFileSync(file, 'utf8')).flags;
  const differs = JSON.stringify(liveFlags) !== JSON.stringify(gitFlags);
  return {
    resource: store.where,
    differs_from_git: differs,
    reconcile: differs
      ? {
          keep_the_live_rollout: `write the live flags into ${file} (npm run rollout -- status --json shows them), then npm run k8s:generate and commit`,
          restore_git: 'kubectl apply -k deploy/kubernetes',
        }
      : null,
  };
}

/** The rollback latch as every replica reads it: while held, the split above is asked for and not routed. */
async function latchStatus() {
  if (!database)
    return 'not known here (DATABASE_URL unset): a service on PGlite keeps its latch in its process, shown by its /v1/flags/status';
  const { hold } = await readAuditedLatch(database.db);
  if (!hold) return { held: false };
  return {
    held: true,
    since: hold.since.toISOString(),
    alert: hold.alert,
    reason: hold.reason,
    actor: hold.actor,
    ml_percentage_routed: 0,
    lift: 'rollout enable --percentage N, once the cause is fixed',
  };
}

async function status() {
  const rolloutState = await live();
  return {
    ...(config.flagStore.kind === 'kubernetes'
      ? { featureflag: store.where, live_flags: JSON.parse(await store.read()).flags }
      : { file }),
    ml_percentage: rolloutState.mlPercentage,
    model_version: currentModelVersion(rolloutState),
    split: rolloutState.split,
    git: config.flagStore.kind === 'kubernetes' ? await featureFlagDrift() : gitDrift(),
    rollback_latch: await latchStatus(),
    recent_changes: await rollout.history(5),
    audit: database ? database.kind : 'not recorded (DATABASE_URL unset)',
  };
}

let result: unknown;
let liftedLatch: Awaited<ReturnType<NonNullable<typeof latch>['current']>> = null;
try {
  if (command === 'enable') liftedLatch = (await latch?.current()) ?? null;
  if (command === 'status') result = await status();
  else if (command === 'history') result = await rollout.history(50);
  else if (command === 'enable') result = await rollout.setPercentage(percentage as number, who('enable'));
  else if (command === 'disable') result = await rollout.setPercentage(0, who('disable'));
  else if (command === 'promote') {
    const current = (await live()).mlPercentage ?? 0;
    const next = nextStep(current);
    if (next === null) fail(`already at ${current}%: nothing to promote to`);
    result = await rollout.setPercentage(next, who('promote'));
  } else if (command === 'set-model') result = await rollout.setModel(version as string, who('set-model'));
  else result = await rollout.canary(version as string, percentage as number, who('canary', version));
} catch (err) {
  fail((err as Error).message);
} finally {
  // An audit row the answer called late is still being written: wait for it before the connection goes.
  await rollout.close(10_000);
  await database?.close();
}

if (values.json) console.log(JSON.stringify(result, null, 2));
else if (result && typeof result === 'object' && 'next' in result) {
  const change = result as {
    changed: boolean;
    previous: { mlPercentage: number | null };
    next: { mlPercentage: number | null; split: { variant: string; weight: number }[] | null };
  };
  const split = change.next.split?.map((s) => `${s.variant} ${s.weight}%`).join(', ');
  console.log(
    change.changed
      ? `delay-model: ML ${change.previous.mlPercentage}% -> ${change.next.mlPercentage}% (${split}; ${store.where})`
      : `delay-model: unchanged, ML ${change.next.mlPercentage}% (${split})`,
  );
  if (liftedLatch)
    console.log(
      `rollback latch lifted (held since ${liftedLatch.since.toISOString()}, ${liftedLatch.alert ?? liftedLatch.actor}): every replica routes ML at the flag's share within ROLLBACK_LATCH_POLL_INTERVAL_MS`,
    );
  else if (command === 'enable' && !database)
    console.log(
      'DATABASE_URL unset: a service on PGlite keeps its rollback latch in its process, and this does not lift it; restart the service to lift it',
    );
  const drift = gitDrift();
  if (drift.differs_from_head)
    console.log(
      `the file now differs from Git's HEAD; to record it: ${drift.reconcile?.keep_the_live_rollout}`,
    );
} else console.log(JSON.stringify(result, null, 2));
