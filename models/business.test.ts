import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { DEFAULT_BUSINESS_SETTINGS } from '../service/domain/business.js';
import { businessOnHoldout } from './business.js';
import { daysIn, generateBookings } from './generator.js';

describe('the business figures on the holdout', () => {
  it('are the ones models/README.md shows, from the command it names', async () => {
    const rows = generateBookings({ seed: 43, count: 10_000 });
    const b = await businessOnHoldout('models', 'gbt-v2', rows, DEFAULT_BUSINESS_SETTINGS, daysIn(2025));
    const pct = (x: number | null) => `${((x ?? Number.NaN) * 100).toFixed(1)}%`;
    const row = (name: string, f: typeof b.ml) =>
      `| ${name} | ${f.late.toLocaleString('en')} | ${name === 'gbt-v2' ? `**${pct(f.anticipated_ratio)}**` : pct(f.anticipated_ratio)} | ${pct(f.false_alarm_ratio)} | ${f.buffer_unused_minutes_mean?.toFixed(3)} | ${f.buffer_shortfall_minutes_mean?.toFixed(3)} | ${f.reassignment_candidates_per_day.toFixed(1)} (${f.reassignment_candidates_per_1000_bookings.toFixed(1)}) |`;
    const page = readFileSync('models/README.md', 'utf8');
    expect(page).toContain('npm run evaluate -- --version gbt-v2 --business');
    expect(page).toContain(row('gbt-v2', b.ml));
    expect(page).toContain(row('rules (heuristic)', b.rules));
    expect(page).toContain(row('oracle (true median)', b.oracle));
    expect(page).toContain(`+${pct(b.ml_against_rules.buffer_unused_change)}, where the plan`);
    expect(b.bookings_per_day).toBe(27.4);
  });
});
