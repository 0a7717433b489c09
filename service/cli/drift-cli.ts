import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { driftReport, PSI_LIMIT } from '../drift/drift-report.js';
import { fail, openToolDatabase, startCli } from './cli.js';

/*
 * npm run drift -- check [--hours 1] [--reference-days 7] [--model gbt-v2] [--min-samples 500] [--json]
 * PSI per feature against the model card's training bins and a KS test against a reference window, from the
 * feature vectors stored with each prediction. Exit 1 when a feature drifts (for cron), 0 otherwise, 2 on errors.
 */
const { values, config } = startCli(
  'npm run drift -- check [--hours 1] [--reference-days 7] [--model VERSION] [--min-samples 500] [--json]',
  ['check'],
  {
    hours: { type: 'string', default: '1' },
    'reference-days': { type: 'string', default: '7' },
    model: { type: 'string', default: 'gbt-v2' },
    'min-samples': { type: 'string', default: '500' },
    json: { type: 'boolean', default: false },
  },
);
const hours = Number(values.hours);
const referenceDays = Number(values['reference-days']);
const minSamples = Number(values['min-samples']);
if (![hours, referenceDays, minSamples].every((n) => Number.isFinite(n) && n > 0))
  fail('--hours, --reference-days and --min-samples must be positive numbers');
let card: { drift?: { features: { name: string; bin_edges: number[]; baseline_ratios: number[] }[] } };
try {
  card = JSON.parse(readFileSync(join(config.modelsDir, `${values.model}.json`), 'utf8'));
} catch (err) {
  fail(`cannot read the model card of ${values.model}: ${(err as Error).message}`);
}
if (!card.drift) fail(`the model card of ${values.model} has no drift bins`);

const now = Date.now();
const windowFrom = new Date(now - hours * 3_600_000);
const database = await openToolDatabase(config);
let report: Awaited<ReturnType<typeof driftReport>>;
try {
  report = await driftReport({
    db: database.db,
    baseline: { model_version: String(values.model), features: card.drift.features },
    window: { from: windowFrom, to: new Date(now) },
    reference: { from: new Date(windowFrom.getTime() - referenceDays * 86_400_000), to: windowFrom },
    minSamples,
  });
} finally {
  await database.close();
}
if (values.json) console.log(JSON.stringify(report, null, 2));
else {
  console.log(
    `drift ${report.window.from} .. ${report.window.to} (PSI limit ${PSI_LIMIT}; KS p < 0.01 and D > 0.1)`,
  );
  console.log('feature                      n      PSI     KS D    KS p   drift');
  for (const f of report.features) {
    const cell = (x: number | null, width: number) => (x === null ? '-' : String(x)).padStart(width);
    const verdict = f.drift === null ? 'too few samples' : f.drift ? 'DRIFT' : 'ok';
    console.log(
      `${f.feature.padEnd(24)}${String(f.n).padStart(7)}${cell(f.psi, 9)}${cell(f.ks_d, 9)}${cell(f.ks_p, 8)}   ${verdict}`,
    );
  }
}
process.exit(report.drift ? 1 : 0);
