import { resolve } from 'node:path';
import { cliActor, fail, startCli } from './cli.js';

/*
 * npm run models -- push VERSION [--dir DIR] | list | show VERSION   [--json]
 * The model registry in the service's database (docs/adr/0013-model-registry.md): Postgres at DATABASE_URL, else
 * the PGlite of DATA_DIR when no running service holds it. push registers DIR/VERSION.onnx with its card
 * DIR/VERSION.json (DIR: MODELS_DIR by default); every replica loads it from there when the flag names it.
 * Exit 0: done; 1: refused or failed, one line on stderr; 2: bad usage.
 */
const usage = 'npm run models -- push VERSION [--dir DIR] | list | show VERSION [--json]';
const { command, operands, values, config } = startCli(
  usage,
  ['push', 'list', 'show'],
  { dir: { type: 'string' }, json: { type: 'boolean', default: false } },
  { push: ['VERSION'], show: ['VERSION'] },
);
if (values.dir !== undefined && command !== 'push') fail(`${command} takes no --dir\nusage: ${usage}`);
const version = operands[0] as string;

// The service's modules load once the arguments are known to be valid: a usage error answers without them.
const [{ DataDirInUseError, openDatabase }, { createModelStore, readModelFiles }] = await Promise.all([
  import('../storage/database.js'),
  import('../models/model-store.js'),
]);

/** One line on stderr and exit 1: a refusal (the registry said no) or a failure (it could not be reached). */
function refuse(message: string): never {
  console.error(message.replaceAll('\n', ' '));
  process.exit(1);
}

const database = await openDatabase(config.database).catch((err: Error) =>
  refuse(
    err instanceof DataDirInUseError
      ? err.message
      : `the model registry cannot be opened (${config.database.url ? 'DATABASE_URL' : `DATA_DIR ${config.database.dataDir}`}): ${err.message}`,
  ),
);
const store = createModelStore(database.db, database.kind);

async function run(): Promise<{ json: unknown; text: string }> {
  if (command === 'push') {
    const dir = resolve(values.dir ?? config.modelsDir);
    const { card, onnx } = await readModelFiles(dir, version);
    const pushed = await store.push({ version, card, onnx, by: cliActor() });
    return {
      json: pushed,
      text:
        pushed.outcome === 'registered'
          ? `${version} registered in ${store.where}: ${pushed.digest}`
          : `${version} is already registered with this artifact: ${pushed.digest}`,
    };
  }
  if (command === 'list') {
    const versions = await store.list();
    const lines = versions.map((v) =>
      [
        v.version.padEnd(16),
        v.retired ? `retired: ${v.note ?? ''}` : `${v.digest} ${v.features} features, ${v.onnxBytes} bytes`,
        v.registeredAt.toISOString(),
        v.registeredBy,
      ].join('  '),
    );
    return { json: versions, text: lines.join('\n') || `no version in ${store.where}` };
  }
  const shown = await store.show(version);
  return { json: shown, text: JSON.stringify(shown, null, 2) };
}

let outcome: { json: unknown; text: string } | Error;
try {
  outcome = await run();
} catch (err) {
  outcome = err as Error;
} finally {
  await database.close();
}
if (outcome instanceof Error) refuse(outcome.message);
console.log(values.json ? JSON.stringify(outcome.json, null, 2) : outcome.text);
