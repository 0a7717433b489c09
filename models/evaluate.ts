import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { DEFAULT_LATE_THRESHOLD_MINUTES, PLAN_TARGETS } from '../service/domain/business.js';
import { type Figures, SEGMENT_BAR } from '../service/retraining/segment-figures.js';
import { businessOnHoldout, type HoldoutBusiness } from './business.js';
import { daysIn, generateBookings, WORLDS, type WorldName } from './generator.js';
import { scoreHoldout } from './holdout.js';

/*
 * npm run evaluate -- [--version gbt-v2] [--dir models] [--world default|hard] [--seed 43] [--count 10000] [--json]
 *                     [--business [--late-threshold 10] [--cost-per-minute X]]
 * Scores a trained model on generated holdout bookings (by default the same 10,000 as npm run train's test
 * set: seed 43) overall and per segment, through the service's own ONNX inference, next to the oracle: a
 * model trained on the default world can be judged on the hard one. --business: the plan's business figures
 * instead (delays anticipated, buffer minutes, reassignment candidates), ML against the rules on the same bookings.
 */
const { values: args } = parseArgs({
  options: {
    version: { type: 'string', default: 'gbt-v2' },
    dir: { type: 'string', default: 'models' },
    world: { type: 'string', default: 'default' },
    seed: { type: 'string', default: '43' },
    count: { type: 'string', default: '10000' },
    json: { type: 'boolean', default: false },
    business: { type: 'boolean', default: false },
    'late-threshold': { type: 'string', default: String(DEFAULT_LATE_THRESHOLD_MINUTES) },
    'cost-per-minute': { type: 'string' },
  },
});
if (!(args.world in WORLDS)) {
  console.error(`--world must be one of ${Object.keys(WORLDS).join(', ')}`);
  process.exit(2);
}
const lateThresholdMinutes = Number(args['late-threshold']);
const costPerDelayMinute =
  args['cost-per-minute'] === undefined ? undefined : Number(args['cost-per-minute']);
if (!Number.isFinite(lateThresholdMinutes) || lateThresholdMinutes <= 0) {
  console.error(`--late-threshold must be a number of minutes above 0 (got ${args['late-threshold']})`);
  process.exit(2);
}
if (costPerDelayMinute !== undefined && !(Number.isFinite(costPerDelayMinute) && costPerDelayMinute >= 0)) {
  console.error(`--cost-per-minute must be a number, 0 or more (got ${args['cost-per-minute']})`);
  process.exit(2);
}
const world = args.world as WorldName;
const rows = generateBookings({ seed: Number(args.seed), count: Number(args.count), world: WORLDS[world] });
if (args.business) {
  // The generator spreads its bookings over one year (2025): the daily volume is the count over its days.
  const days = daysIn(2025);
  const business = await businessOnHoldout(
    resolve(args.dir),
    String(args.version),
    rows,
    { lateThresholdMinutes, costPerDelayMinute },
    days,
  );
  if (args.json) console.log(JSON.stringify({ version: args.version, world, ...business }, null, 2));
  else printBusiness(business);
} else {
  const scores = await scoreHoldout(resolve(args.dir), String(args.version), rows);
  if (args.json) console.log(JSON.stringify({ version: args.version, world, ...scores }, null, 2));
  else printSegments(scores);
}

function printSegments(scores: Awaited<ReturnType<typeof scoreHoldout>>) {
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

function printBusiness(b: HoldoutBusiness) {
  const pct = (x: number | null) => (x === null ? 'n/a' : `${(x * 100).toFixed(1)}%`);
  const signed = (x: number | null) => (x === null ? 'n/a' : `${x > 0 ? '+' : ''}${(x * 100).toFixed(1)}%`);
  const line = (name: string, f: HoldoutBusiness['ml']) =>
    `| ${name} | ${f.late} | ${pct(f.anticipated_ratio)} | ${f.flagged} | ${pct(f.false_alarm_ratio)} | ${f.buffer_unused_minutes_mean?.toFixed(3)} | ${f.buffer_shortfall_minutes_mean?.toFixed(3)} | ${f.reassignment_candidates_per_day.toFixed(1)} (${f.reassignment_candidates_per_1000_bookings.toFixed(1)} per 1,000) |${b.cost_per_delay_minute === null ? '' : ` ${f.cost?.toFixed(2)} |`}`;
  const vs = b.ml_against_rules;
  const t = PLAN_TARGETS;
  console.log(
    `${args.version} on the ${world} world, seed ${args.seed}, ${b.bookings} bookings over ${b.days} days (${b.bookings_per_day} a day); late: actual delay >= ${b.late_threshold_minutes} min, flagged: predicted delay >= ${b.late_threshold_minutes} min`,
  );
  console.log(
    `| predictor | late bookings | anticipated (of late) | flagged | false alarms (of flagged) | buffer unused (min/booking) | buffer shortfall (min/booking) | reassignment candidates a day |${b.cost_per_delay_minute === null ? '' : ` cost at ${b.cost_per_delay_minute}/min |`}`,
  );
  console.log(
    `| --- | --- | --- | --- | --- | --- | --- | --- |${b.cost_per_delay_minute === null ? '' : ' --- |'}`,
  );
  console.log(line(String(args.version), b.ml));
  console.log(line('rules (heuristic)', b.rules));
  console.log(line('oracle (true median)', b.oracle));
  console.log(
    `| plan target | | ${pct(t.anticipatedRatio)} or more | | | ${signed(t.bufferUnusedChange)} against the rules | | about ${t.reassignmentsPerDay} |${b.cost_per_delay_minute === null ? '' : ` ${signed(t.costChange)} against the rules |`}`,
  );
  console.log(
    `\n${args.version} against the rules on the same bookings: buffer unused ${signed(vs.buffer_unused_change)} (plan ${signed(t.bufferUnusedChange)}), buffer shortfall ${signed(vs.buffer_shortfall_change)}, buffer minutes unused and missing (the cost at any price per minute) ${signed(vs.buffer_minutes_change)} (plan ${signed(t.costChange)}); anticipated ${pct(b.ml.anticipated_ratio)} against the plan's ${pct(t.anticipatedRatio)}`,
  );
}
