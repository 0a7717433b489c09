import { spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { predictions } from '../../db/schema.js';
import { generateBookings } from '../../models/generator.js';
import { NEUTRAL_WEATHER } from '../domain/weather.js';
import { bookingFeatures, FEATURE_NAMES, featureVector } from '../features/booking-features.js';
import { openDatabase } from '../storage/database.js';
import { tempDir } from '../test-support/harness.js';
import { binOf } from './drift-monitor.js';
import { ksTest, psi } from './drift-report.js';

describe('drift statistics', () => {
  it('PSI is 0 on the baseline and large when one bin takes everything', () => {
    expect(psi([25, 75], [0.25, 0.75])).toBeCloseTo(0, 10);
    expect(psi([100, 0], [0.5, 0.5])).toBeCloseTo(0.5 * Math.log(2) + (1e-4 - 0.5) * Math.log(1e-4 / 0.5), 6);
  });

  it('bins with the trainer rule', () => {
    expect([1, 2, 2.5, 6, 6.1].map((x) => binOf([2, 6], x))).toEqual([0, 0, 1, 1, 2]);
  });

  it('KS: no difference between a sample and itself, a clear one between shifted samples', () => {
    const a = Array.from({ length: 100 }, (_, i) => i + 1);
    expect(ksTest(a, a)).toEqual({ d: 0, p: 1 });
    const shifted = ksTest(
      a,
      a.map((x) => x + 50),
    );
    expect(shifted.d).toBe(0.5);
    expect(shifted.p).toBeLessThan(1e-6);
  });
});

describe('npm run drift', () => {
  async function databaseWith(shiftDistance: number) {
    const dataDir = tempDir('delay-drift-');
    const database = await openDatabase({ dataDir });
    const rows = generateBookings({ seed: 11, count: 3000 }).map((raw, i) => {
      const vector = featureVector(bookingFeatures(raw.booking, raw.weather), NEUTRAL_WEATHER);
      const live = i < 1000;
      if (live)
        vector[FEATURE_NAMES.indexOf('distance_km')] =
          (vector[FEATURE_NAMES.indexOf('distance_km')] as number) * shiftDistance;
      return {
        bookingId: `d-${i}`,
        // The first 1,000 in the last hour (the live window), the rest over the days before it (the reference).
        predictedAt: new Date(Date.now() - (live ? 30 * 60_000 : 2 * 86_400_000 + i * 60_000)),
        endpoint: 'batch',
        source: 'heuristic',
        variant: 'heuristic',
        delayMinutes: 5,
        intervalLow: 2,
        intervalHigh: 9,
        shadowHeuristicDelay: 5,
        features: vector,
        weatherSource: 'api',
        latencyMs: 1,
      };
    });
    for (let i = 0; i < rows.length; i += 500)
      await database.db.insert(predictions).values(rows.slice(i, i + 500));
    await database.close();
    return dataDir;
  }
  const drift = (dataDir: string) =>
    spawnSync(process.execPath, ['--import', 'tsx', 'service/cli/drift-cli.ts', 'check', '--json'], {
      encoding: 'utf8',
      env: { PATH: process.env.PATH ?? '', DATA_DIR: dataDir },
    });

  it('exits 0 on traffic like the training data', async () => {
    const run = drift(await databaseWith(1));
    expect(run.status, run.stderr).toBe(0);
    const report = JSON.parse(run.stdout);
    expect(report.features.find((f: { feature: string }) => f.feature === 'distance_km')).toMatchObject({
      n: 1000,
      drift: false,
    });
  }, 60_000);

  it('exits 1 and names the feature when trips get three times longer', async () => {
    const run = drift(await databaseWith(3));
    expect(run.status, run.stderr).toBe(1);
    const distance = JSON.parse(run.stdout).features.find(
      (f: { feature: string }) => f.feature === 'distance_km',
    );
    expect(distance.drift).toBe(true);
    expect(distance.psi).toBeGreaterThan(0.25);
    expect(distance.ks_p).toBeLessThan(0.01);
  }, 60_000);
});
