import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { daysThatMatter } from '../models/traffic.js';
import { ROLLBACK_SIGNALS } from '../service/domain/rollback-policy.js';
import { aimText, measuredScenarios } from './rollback-scenarios.js';

/*
 * docs/rollout-and-rollback.md keeps the last tables of `npm run measure:rollback -- --markdown` and
 * `npm run measure:drift-alert`. The measures take half an hour and more, so the suite does not rerun them: it
 * checks that the page's tables still list what the code measures, with the aims the code sets, and say which
 * command produced them and when.
 */
const page = readFileSync('docs/rollout-and-rollback.md', 'utf8');

/** The section under the heading `title` (up to the next heading of the same or a higher level). */
function section(title: string): string {
  const lines = page.split('\n');
  const start = lines.findIndex((l) => /^#+ /.test(l) && l.replace(/^#+ /, '') === title);
  if (start < 0) throw new Error(`docs/rollout-and-rollback.md has no heading "${title}"`);
  const level = (lines[start] as string).indexOf(' ');
  const end = lines.findIndex((l, i) => i > start && /^#+ /.test(l) && l.indexOf(' ') <= level);
  return lines.slice(start, end < 0 ? undefined : end).join('\n');
}

/** The rows of the Markdown table whose header row starts with `header`, as trimmed cells. */
function tableRows(text: string, header: string): string[][] {
  const lines = text.split('\n');
  const start = lines.findIndex((l) => l.startsWith(header));
  if (start < 0) throw new Error(`no table starting "${header}"`);
  const rows: string[][] = [];
  for (const line of lines.slice(start + 2)) {
    if (!line.startsWith('|')) break;
    rows.push(
      line
        .slice(1, -1)
        .split(' | ')
        .map((c) => c.trim()),
    );
  }
  return rows;
}

const DATE = /\b20\d\d-\d\d-\d\d\b/;

describe('the time-to-rollback table in docs/rollout-and-rollback.md', () => {
  const measured = section('Time to rollback, measured');
  const rows = tableRows(measured, '| traffic | scenario | first rollback alert (signal) |');

  it('has one row per scenario the measure runs, with the aim the code sets, each met', () => {
    const scenarios = measuredScenarios();
    const expected = scenarios.map((s) => [s.order, s.name, aimText(s.aim)]);
    const shown = rows.map((r) => [r[0], r[1], r[8]]);
    expect(shown).toEqual(expect.arrayContaining(expected));
    expect(rows).toHaveLength(scenarios.length);
    expect(rows.filter((r) => r[9] !== 'yes').map((r) => r[1])).toEqual([]);
  });

  it('names the command that produced it and the date it ran', () => {
    expect(measured).toContain('npm run measure:rollback -- --markdown');
    expect(measured).toMatch(DATE);
  });
});

describe('the rollback signals table in docs/rollout-and-rollback.md', () => {
  it('lists every rollback alert with the signal it names', () => {
    const rows = tableRows(section('What rolls back'), '| signal | alert | rolls back when |');
    expect(rows.map((r) => [r[1], r[0]])).toEqual(
      Object.entries(ROLLBACK_SIGNALS).map(([alert, signal]) => [`\`${alert}\``, signal]),
    );
  });
});

describe('the drift alert table in docs/rollout-and-rollback.md', () => {
  const measured = section('The drift alert, measured');

  it('names the command that produced it and the date it ran', () => {
    expect(measured).toContain('npm run measure:drift-alert');
    expect(measured).toMatch(DATE);
  });

  it('has a row for each healthy day the measure replays in time order, and the shuffled traffic', () => {
    const rows = tableRows(measured, '| traffic | result |').map((r) => r[0] ?? '');
    // The drift measure's default traffic seed (its --seed).
    const days = daysThatMatter(1);
    for (const day of [days.wetWinterWeekday, days.drySummerWeekday, days.dryWeekendDay])
      expect(rows.some((r) => r.startsWith('healthy') && r.includes(day.date))).toBe(true);
    expect(rows.some((r) => r.startsWith('longer trips (x1.5)'))).toBe(true);
    expect(rows.some((r) => r.startsWith('shuffled'))).toBe(true);
  });
});
