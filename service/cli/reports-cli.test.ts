import { spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { feedback, predictions } from '../../db/schema.js';
import { openDatabase } from '../storage/database.js';
import { tempDir } from '../test-support/harness.js';

const run = (args: string[], dataDir: string) =>
  spawnSync(process.execPath, ['--import', 'tsx', 'service/cli/reports-cli.ts', ...args], {
    encoding: 'utf8',
    env: { PATH: process.env.PATH ?? '', DATA_DIR: dataDir },
    // Once in CI on Node 24 the tool hung after its usage error: a hang fails here instead of stalling the suite.
    timeout: 30_000,
  });

describe('npm run report', () => {
  it('prints the A/B report and purges old rows from the configured database', async () => {
    const dataDir = tempDir('delay-report-');
    const database = await openDatabase({ dataDir });
    const base = {
      endpoint: 'single',
      variant: 'heuristic',
      source: 'heuristic',
      intervalLow: 1,
      intervalHigh: 9,
      shadowHeuristicDelay: 4,
      features: [],
      weatherSource: 'default',
      latencyMs: 1,
    };
    await database.db.insert(predictions).values([
      { ...base, bookingId: 'a', predictedAt: new Date(), delayMinutes: 4 },
      { ...base, bookingId: 'old', predictedAt: new Date(Date.now() - 200 * 86_400_000), delayMinutes: 4 },
    ]);
    await database.db.insert(feedback).values({ bookingId: 'a', actualDelayMinutes: 6 });
    await database.close();

    const ab = run(['ab', '--days', '30'], dataDir);
    expect(ab.status, ab.stderr).toBe(0);
    expect(JSON.parse(ab.stdout).arms.heuristic).toMatchObject({ n: 1, mae: 2 });
    const purge = run(['purge', '--days', '90'], dataDir);
    expect(JSON.parse(purge.stdout)).toEqual({
      purged: { predictions: 1, feedback: 0 },
      older_than_days: 90,
    });
    expect(run(['purge', '--days', 'soon'], dataDir).status).toBe(2);
    expect(run(['nothing'], dataDir).status).toBe(2);
  }, 60_000);
});
