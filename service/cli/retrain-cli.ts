import { hostname } from 'node:os';
import { resolve } from 'node:path';
import { fail, openToolDatabase, startCli } from './cli.js';

/*
 * npm run retrain -- run [--days 30] [--champion VERSION] [--version VERSION] [--register] [--holdout 0.2]
 *                        [--margin 0.05] [--min-rows 2000] [--max-rows 200000] [--estimators 300] [--json]
 * Trains a challenger on the feature vectors served in the last --days with their feedback, scores it and the
 * champion (default: the model the flag serves, read from FLAGS_FILE or the FeatureFlag) on the most recent
 * --holdout share, and keeps it as a candidate only when its MAE beats the champion's by --margin, its 80% interval
 * is no further from 80% coverage than the champion's, and it meets the segment bar wherever the champion does. A
 * candidate is written to MODELS_DIR, or with --register registered in the model registry; it serves nothing.
 * Exit 0: a challenger trained and judged, a candidate or not (the output says which); 1: the run failed (the
 * trainer, the database, the registry), another run may pass; 2: usage, a bad setting, an unknown champion, a
 * version already taken; 3: too little feedback in the window, nothing trained (docs/adr/0015-retraining-job.md).
 */
const usage =
  'npm run retrain -- run [--days 30] [--champion VERSION] [--version VERSION] [--register] [--holdout 0.2] [--margin 0.05] [--min-rows 2000] [--max-rows 200000] [--estimators 300] [--json]';
const { values, config } = startCli(usage, ['run'], {
  days: { type: 'string', default: '30' },
  champion: { type: 'string' },
  version: { type: 'string' },
  register: { type: 'boolean', default: false },
  holdout: { type: 'string', default: '0.2' },
  margin: { type: 'string', default: '0.05' },
  'min-rows': { type: 'string', default: '2000' },
  'max-rows': { type: 'string', default: '200000' },
  estimators: { type: 'string', default: '300' },
  json: { type: 'boolean', default: false },
});

const days = Number(values.days);
const holdoutShare = Number(values.holdout);
const margin = Number(values.margin);
const minRows = Number(values['min-rows']);
const maxRows = Number(values['max-rows']);
const estimators = Number(values.estimators);
if (!(days > 0)) fail('--days must be a positive number');
if (!(holdoutShare > 0 && holdoutShare < 1)) fail('--holdout must be between 0 and 1');
if (!(margin >= 0 && margin < 1)) fail('--margin must be between 0 and 1');
if (!(Number.isInteger(minRows) && minRows > 0)) fail('--min-rows must be a positive integer');
if (!(Number.isInteger(maxRows) && maxRows >= minRows))
  fail('--max-rows must be an integer of at least --min-rows');
if (!(Number.isInteger(estimators) && estimators > 0)) fail('--estimators must be a positive integer');

const modelsDir = resolve(config.modelsDir);

/** A failure a later run may not meet (exit 1), or too little feedback (exit 3): the message on stderr. */
function exit(code: 1 | 3, message: string): never {
  console.error(message);
  process.exit(code);
}

// The service's modules load once the arguments are known to be valid: a usage error answers without them.
const [
  { parseFlagConfig },
  { flagStoreFor },
  { currentModelVersion },
  { createModelStore },
  { RetrainError, TooLittleFeedbackError, TrainerError },
  { RegistrationError, retrainJob },
  { createLogger },
] = await Promise.all([
  import('../flags/flag-config.js'),
  import('../flags/flag-store.js'),
  import('../flags/flag-writer.js'),
  import('../models/model-store.js'),
  import('../retraining/retraining.js'),
  import('../retraining/retrain-job.js'),
  import('../telemetry/logger.js'),
]);

let champion = values.champion;
if (!champion) {
  const flags = flagStoreFor(config.flagStore, createLogger('warn'));
  let text: string;
  try {
    text = await flags.read();
  } catch (err) {
    exit(1, `cannot read the served model from ${flags.where}: ${(err as Error).message}; pass --champion`);
  }
  try {
    champion = currentModelVersion(parseFlagConfig(text)) ?? undefined;
  } catch (err) {
    fail(
      `${flags.where} is not a flag document the service accepts: ${(err as Error).message}; pass --champion`,
    );
  }
  if (!champion) fail(`${flags.where} names no model variant; pass --champion`);
}

const now = Date.now();
let database: Awaited<ReturnType<typeof openToolDatabase>>;
try {
  database = await openToolDatabase(config);
} catch (err) {
  exit(1, `cannot open the database: ${(err as Error).message}`);
}
let report: Awaited<ReturnType<typeof retrainJob>>;
try {
  report = await retrainJob({
    db: database.db,
    store: createModelStore(database.db, database.kind),
    modelsDir,
    champion,
    ...(values.version ? { version: values.version } : {}),
    register: values.register,
    by: `retrain:${hostname()}`,
    window: { from: new Date(now - days * 86_400_000), to: new Date(now) },
    holdoutShare,
    margin,
    minRows,
    maxRows,
    estimators,
  });
} catch (err) {
  await database.close();
  if (err instanceof TooLittleFeedbackError)
    exit(3, `${err.message}: nothing trained, nothing ${values.register ? 'registered' : 'written'}`);
  if (err instanceof RetrainError) fail(err.message);
  if (err instanceof TrainerError || err instanceof RegistrationError) exit(1, err.message);
  // The database failing mid-run, or what nobody foresaw: the stack tells where.
  exit(1, `retrain failed: ${(err as Error).stack ?? err}`);
}
await database.close();

const { version } = report;
if (values.json) console.log(JSON.stringify(report, null, 2));
else {
  const { rows, champion: c, challenger: n } = report;
  console.log(`retrain ${report.window.from} .. ${report.window.to}`);
  console.log(`  champion ${c.version} from ${report.champion_source}`);
  console.log(
    `  ${rows.with_feedback} bookings with feedback: ${rows.train} to train, ${rows.holdout} held out`,
  );
  console.log(`  held out (from ${report.holdout_from}):   MAE   coverage 80%`);
  console.log(
    `    champion   ${c.version.padEnd(14)}${String(c.mae).padStart(7)}${String(c.coverage_80).padStart(9)}`,
  );
  console.log(
    `    challenger ${n.version.padEnd(14)}${String(n.mae).padStart(7)}${String(n.coverage_80).padStart(9)}`,
  );
  console.log(`    heuristic  ${''.padEnd(14)}${String(report.heuristic_mae).padStart(7)}`);
  console.log(
    '  per segment (reference: the served delay)   n   MAE  bias  coverage 80%: champion | challenger',
  );
  for (const [segment, f] of Object.entries(report.segments.champion)) {
    const g = report.segments.challenger[segment as keyof typeof report.segments.challenger];
    const cells = (x: typeof f) =>
      `${String(x.mae).padStart(7)}${String(x.bias).padStart(8)}${String(x.coverage_80).padStart(8)}`;
    console.log(`    ${segment.padEnd(20)}${String(f.n).padStart(6)}${cells(f)} |${cells(g)}`);
  }
  for (const warning of report.warnings) console.log(`warning: ${warning}`);
  if (!report.candidate) {
    console.log(
      `${version} is not a candidate: ${report.reason}; nothing ${values.register ? 'registered' : 'written'}`,
    );
  } else {
    console.log(`${version} is a candidate: ${report.reason}`);
    if (report.registration)
      console.log(
        `  ${report.registration.outcome} in the model registry: ${report.registration.digest}; it serves no booking until canaried`,
      );
    else console.log(`  written: ${report.files.join(', ')}; register it: npm run models -- push ${version}`);
    console.log(`  canary it: npm run rollout -- canary ${version} --percentage 5`);
  }
}
process.exit(0);
