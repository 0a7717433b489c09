import { spawnSync } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startFakeOpenWeatherMap } from '../test-support/fake-openweathermap.js';

let fake: Awaited<ReturnType<typeof startFakeOpenWeatherMap>>;
beforeAll(async () => {
  fake = await startFakeOpenWeatherMap();
});
afterAll(() => fake.close());

// spawnSync would block the fake server living in this process: run the CLI asynchronously.
async function cli(args: string[], env: Record<string, string>) {
  const { spawn } = await import('node:child_process');
  const child = spawn(process.execPath, ['--import', 'tsx', 'service/cli/weather-cli.ts', ...args], {
    env: { PATH: process.env.PATH ?? '', ...env },
  });
  let out = '';
  child.stdout.on('data', (d) => {
    out += d;
  });
  child.stderr.on('data', (d) => {
    out += d;
  });
  const code = await new Promise<number | null>((r) => child.on('exit', r));
  return { code, out };
}

describe('npm run weather', () => {
  it('check: says the key is accepted and prints cache statistics', async () => {
    fake.setMode({ kind: 'ok' });
    const { code, out } = await cli(['check'], {
      OPENWEATHER_API_KEY: 'secret-key-123',
      OPENWEATHER_BASE_URL: fake.url,
    });
    expect(code).toBe(0);
    expect(out).toContain('"key": "accepted"');
    expect(out).toContain('"budget_used": 1');
    expect(out).not.toContain('secret-key-123');
  });

  it('check: exits 1 on a rejected key, naming the status', async () => {
    fake.setMode({ kind: 'status', status: 401 });
    const { code, out } = await cli(['check'], {
      OPENWEATHER_API_KEY: 'secret-key-123',
      OPENWEATHER_BASE_URL: fake.url,
    });
    expect(code).toBe(1);
    expect(out).toContain('"key": "rejected"');
    expect(out).toContain('"status": 401');
    expect(out).not.toContain('secret-key-123');
  });

  it('exits 2 without a key or a command', async () => {
    expect((await cli(['check'], {})).code).toBe(2);
    expect(
      spawnSync(process.execPath, ['--import', 'tsx', 'service/cli/weather-cli.ts'], { encoding: 'utf8' })
        .status,
    ).toBe(2);
  });
});
