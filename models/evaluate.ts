import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { type Figures, SEGMENT_BAR } from '../service/retraining/segment-figures.js';
import { generateBookings, WORLDS, type WorldName } from './generator.js';
import { scoreHoldout } from './holdout.js';

/*
 * npm run evaluate -- [--version gbt-v2] [--dir models] [--world default|hard] [--seed 43] [--count 10000] [--json]
 * Scores a trained model on generated holdout bookings (by default the same 10,000 as npm run train's test
 * set: seed 43) overall and per segment, through the service's own ONNX inference, next to the oracle: a
 * model trained on the default world can be judged on the hard one.
 */
const { values: args } = parseArgs({
  options: {
    version: { type: 'string', default: 'gbt-v2' },
    dir: { type: 'string', default: 'models' },
    world: { type: 'string', default: 'default' },
    seed: { type: 'string', default: '43' },
    count: { type: 'string', default: '10000' },
    json: { type: 'boolean', default: false },
  },
});
if (!(args.world in WORLDS)) {
  console.error(`--world must be one of ${Object.keys(WORLDS).join(', ')}`);
  process.exit(2);
}
const world = args.world as WorldName;
const rows = generateBookings({ seed: Number(args.seed), count: Number(args.count), world: WORLDS[world] });
const scores = await scoreHoldout(resolve(args.dir), String(args.version), rows);

if (args.json) console.log(JSON.stringify({ version: args.version, world, ...scores }, null, 2));
else {
  const judged = (f: Figures) => (f.n >= SEGMENT_BAR.minBookings ? '' : ' (not judged)');
  const line = (name: string, f: Figures, o: Figures) =>
    `| ${name}${judged(f)} | ${f.n} | ${f.mae.toFixed(3)} | ${f.bias.toFixed(2)} | ${f.coverage_80.toFixed(3)} | ${f.below.toFixed(3)} | ${f.above.toFixed(3)} | ${o.mae.toFixed(3)} | ${o.bias.toFixed(2)} | ${o.coverage_80.toFixed(3)} |`;
  console.log(`${args.version} on the ${world} world, seed ${args.seed}, ${args.count} bookings`);
  console.log(
    '| segment | n | MAE | bias | 80% coverage | below | above | oracle MAE | oracle bias | oracle coverage |',
  );
  console.log('| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |');
  console.log(line('all', scores.model.all, scores.oracle.all));
  for (const [name, f] of Object.entries(scores.model.segments))
    console.log(line(name, f, scores.oracle.segments[name as keyof typeof scores.oracle.segments]));
}
