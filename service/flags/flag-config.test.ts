import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { flagsDocument } from '../test-support/harness.js';
import { FlagConfigError, parseFlagConfig } from './flag-config.js';

const parse = (doc: unknown) => parseFlagConfig(JSON.stringify(doc));

function delayModel(edit: (flag: Record<string, unknown>) => void) {
  const doc = flagsDocument({ mlWeight: 10 });
  edit(doc.flags['delay-model'] as unknown as Record<string, unknown>);
  return JSON.stringify(doc);
}

describe('parseFlagConfig', () => {
  it('reads the shipped flags: $schema, ML listed first at 10%', () => {
    const text = readFileSync('flagd/flags.json', 'utf8');
    const doc = JSON.parse(text);
    expect(doc.$schema).toBe('https://flagd.dev/schema/v0/flags.json');
    const rollout = parseFlagConfig(text);
    expect(rollout.mlPercentage).toBe(10);
    expect(rollout.split?.[0]?.variant).not.toBe('heuristic');
    expect(rollout.activeModelVersions).toHaveLength(1);
  });

  it('computes the ML share from fractional weights', () => {
    expect(parse(flagsDocument({ mlWeight: 25 })).mlPercentage).toBe(25);
    expect(parse(flagsDocument({ mlWeight: 0 }))).toMatchObject({ mlPercentage: 0, activeModelVersions: [] });
    expect(parse(flagsDocument({ mlWeight: 100 })).activeModelVersions).toEqual(['gbt-v2']);
  });

  it('reads a disabled flag as no ML, and a static default as all or nothing', () => {
    const disabled = flagsDocument({ mlWeight: 50 });
    disabled.flags['delay-model'].state = 'DISABLED';
    expect(parse(disabled).mlPercentage).toBe(0);
    const allMl = flagsDocument();
    allMl.flags['delay-model'].defaultVariant = 'gbt-v2';
    (allMl.flags['delay-model'] as { targeting?: unknown }).targeting = undefined;
    expect(parse(allMl)).toMatchObject({ mlPercentage: 100, activeModelVersions: ['gbt-v2'] });
  });

  it('reports an unknown share for targeting that is not a plain split', () => {
    const doc = flagsDocument();
    (doc.flags['delay-model'] as { targeting: unknown }).targeting = {
      if: [{ '==': [{ var: 'priority' }, 'medical'] }, 'heuristic', 'gbt-v2'],
    };
    expect(parse(doc)).toMatchObject({ mlPercentage: null, split: null, activeModelVersions: ['gbt-v2'] });
  });

  it.each([
    ['not JSON', '{"flags": {', /not valid JSON/],
    ['a schema violation', JSON.stringify({ flags: { 'delay-model': { state: 'ON' } } }), /flagd's schema/],
    [
      'a default variant that does not exist',
      JSON.stringify({
        ...flagsDocument(),
        flags: {
          ...flagsDocument().flags,
          'weather-enrichment': { state: 'ENABLED', variants: { on: true }, defaultVariant: 'off' },
        },
      }),
      /flagd's schema/,
    ],
  ])('refuses %s', (_name, text, message) => {
    expect(() => parseFlagConfig(text)).toThrow(FlagConfigError);
    expect(() => parseFlagConfig(text)).toThrow(message);
  });

  it('refuses files this service cannot route with', () => {
    const noHeuristic = flagsDocument();
    noHeuristic.flags['delay-model'].variants = { 'gbt-v2': 'gbt-v2' } as never;
    noHeuristic.flags['delay-model'].defaultVariant = 'gbt-v2';
    noHeuristic.flags['delay-model'].targeting = { fractional: [['gbt-v2', 100]] };
    expect(() => parse(noHeuristic)).toThrow(/needs a 'heuristic' variant/);

    const missing = flagsDocument() as { flags: Record<string, unknown> };
    delete missing.flags['weather-enrichment'];
    expect(() => parse(missing)).toThrow(/'weather-enrichment' is missing/);

    const mismatched = flagsDocument();
    mismatched.flags['delay-model'].variants = { heuristic: 'heuristic', 'gbt-v2': 'gbt-v3' } as never;
    expect(() => parse(mismatched)).toThrow(/must have the value 'gbt-v2'/);

    const unknownBucket = flagsDocument();
    unknownBucket.flags['delay-model'].targeting.fractional = [
      ['gbt-v9', 10],
      ['heuristic', 90],
    ];
    expect(() => parse(unknownBucket)).toThrow(/not one of its variants/);
  });
});

describe('what the service routes on, read as flagd routes it', () => {
  const maxTotal = 2 ** 31 - 1;

  it.each([
    [
      'weights 0/0 (flagd sends every booking to the default variant)',
      (flag: Record<string, unknown>) => {
        flag.defaultVariant = 'gbt-v2';
        flag.targeting = {
          fractional: [
            ['gbt-v2', 0],
            ['heuristic', 0],
          ],
        };
      },
      'the fractional weights add up to 0, outside 1..2147483647',
    ],
    [
      'weights adding up past 2^31 - 1',
      (flag: Record<string, unknown>) => {
        flag.targeting = {
          fractional: [
            ['gbt-v2', 2 ** 31],
            ['heuristic', 2 ** 31],
          ],
        };
      },
      'the fractional weights add up to 4294967296',
    ],
    [
      'weights adding up to 2^31 exactly',
      (flag: Record<string, unknown>) => {
        flag.targeting = {
          fractional: [
            ['gbt-v2', maxTotal],
            ['heuristic', 1],
          ],
        };
      },
      'the fractional weights add up to 2147483648',
    ],
    [
      'a split bucketed by an expression',
      (flag: Record<string, unknown>) => {
        flag.targeting = { fractional: [{ var: 'company_id' }, ['gbt-v2', 10], ['heuristic', 90]] };
      },
      'must bucket by the booking id',
    ],
    [
      'neither targeting nor a default variant',
      (flag: Record<string, unknown>) => {
        flag.targeting = undefined;
        flag.defaultVariant = undefined;
      },
      'no targeting and no default variant',
    ],
    [
      'a negative weight',
      (flag: Record<string, unknown>) => {
        flag.targeting = {
          fractional: [
            ['gbt-v2', 50],
            ['heuristic', -50],
          ],
        };
      },
      "flagd's schema",
    ],
    [
      'a weight that is not a whole number',
      (flag: Record<string, unknown>) => {
        flag.targeting = {
          fractional: [
            ['gbt-v2', 10.5],
            ['heuristic', 89.5],
          ],
        };
      },
      "flagd's schema",
    ],
  ])('refuses %s', (_name, edit, reason) => {
    expect(() => parseFlagConfig(delayModel(edit))).toThrow(reason);
  });

  it.each([
    [
      'weights adding up to 2^31 - 1',
      (flag: Record<string, unknown>) => {
        flag.targeting = {
          fractional: [
            ['gbt-v2', maxTotal - 1],
            ['heuristic', 1],
          ],
        };
      },
      100,
    ],
    [
      'buckets without weights (1 each)',
      (flag: Record<string, unknown>) => {
        flag.targeting = { fractional: [['gbt-v2'], ['heuristic']] };
      },
      50,
    ],
    [
      'a default variant and no targeting',
      (flag: Record<string, unknown>) => {
        flag.targeting = undefined;
        flag.defaultVariant = 'gbt-v2';
      },
      100,
    ],
    [
      'a disabled flag whatever its weights',
      (flag: Record<string, unknown>) => {
        flag.state = 'DISABLED';
        flag.targeting = {
          fractional: [
            ['gbt-v2', 0],
            ['heuristic', 0],
          ],
        };
      },
      0,
    ],
  ])('accepts %s', (_name, edit, share) => {
    expect(parseFlagConfig(delayModel(edit)).mlPercentage).toBe(share);
  });
});
