import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { parseFlagConfig } from '../flags/flag-config.js';
import { currentModelVersion } from '../flags/flag-writer.js';
import { nextVersion, RetrainError, retrain } from '../retraining/retraining.js';
import { fail, openToolDatabase, startCli } from './cli.js';

/*
 * npm run retrain -- run [--days 30] [--champion VERSION] [--version VERSION] [--holdout 0.2] [--margin 0.05]
 *                        [--min-rows 2000] [--max-rows 200000] [--estimators 300] [--json]
 * Trains a challenger on the feature vectors served in the last --days with their feedback, scores it and the
 * champion (default: the model the flag serves) on the most recent --holdout share, and writes it to MODELS_DIR
 * as a candidate only when its MAE beats the champion's by --margin, its 80% interval is no further from 80%
 * coverage than the champion's, and it meets the segment bar wherever the champion does. Exit 0: a candidate; 1: none; 2: errors.
 */
const usage =
  'npm run retrain -- run [--days 30] [--champion VERSION] [--version VERSION] [--holdout 0.2] [--margin 0.05] [--min-rows 2000] [--max-rows 200000] [--estimators 300] [--json]';
const { values, config } = startCli(usage, ['run'], {
  days: { type: 'string', default: '30' },
  champion: { type: 'string' },
  version: { type: 'string' },
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
let champion = values.champion;
if (!champion) {
  try {
    champion = currentModelVersion(parseFlagConfig(readFileSync(config.flagsFile, 'utf8'))) ?? undefined;
  } catch (err) {
    fail(`cannot read the served model from ${config.flagsFile}: ${(err as Error).message}; pass --champion`);
  }
  if (!champion) fail(`${config.flagsFile} names no model variant; pass --champion`);
}
const version = values.version ?? nextVersion(champion, modelsDir);

const now = Date.now();
const database = await openToolDatabase(config);
let report: Awaited<ReturnType<typeof retrain>>;
try {
  report = await retrain({
    db: database.db,
    modelsDir,
    champion,
    version,
    window: { from: new Date(now - days * 86_400_000), to: new Date(now) },
    holdoutShare,
    margin,
    minRows,
    maxRows,
    estimators,
  });
} catch (err) {
  await database.close();
  // Exit 1 means "no candidate": every failure, expected or not, is exit 2.
  fail(err instanceof RetrainError ? err.message : `retrain failed: ${(err as Error).stack ?? err}`);
}
await database.close();

if (values.json) console.log(JSON.stringify({ version, ...report }, null, 2));
else {
  const { rows, champion: c, challenger: n } = report;
  console.log(`retrain ${report.window.from} .. ${report.window.to}`);
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
  if (report.candidate) {
    console.log(`${version} is a candidate: ${report.reason}`);
    console.log(`  written: ${report.files.join(', ')}`);
    console.log(`  canary it: npm run rollout -- canary ${version} --percentage 5`);
  } else {
    console.log(`${version} is not a candidate: ${report.reason}; nothing written`);
  }
}
process.exit(report.candidate ? 0 : 1);
