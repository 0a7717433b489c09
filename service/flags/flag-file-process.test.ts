import { execFileSync } from 'node:child_process';
import { renameSync, rmSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it, onTestFinished } from 'vitest';
import type { Prediction } from '../predictions/schemas.js';
import {
  booking,
  eventually,
  flagsDocument,
  flagsFile,
  tempDir,
  writeFlags,
} from '../test-support/harness.js';
import { type ServiceProcess, scrapeMetrics, startService, waitForReady } from '../test-support/process.js';
import type { FlagStatus } from './flag-service.js';

/*
 * The flag file as a careless operator leaves it, on the real process: a split flagd would ignore, a FIFO and a
 * device at the flag path. Each is refused and counted while the service keeps answering on the last good flags.
 */

const ids = Array.from({ length: 300 }, (_, i) => `flag-file-${i}`);

async function variants(service: ServiceProcess) {
  const res = await fetch(`http://127.0.0.1:${service.port}/v1/predictions/batch`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ bookings: ids.map((id) => booking({ booking_id: id })) }),
    signal: AbortSignal.timeout(10_000),
  });
  expect(res.status).toBe(200);
  return ((await res.json()) as { predictions: Prediction[] }).predictions.map((p) => p.variant);
}

const flagStatus = async (service: ServiceProcess) =>
  (await (
    await fetch(`http://127.0.0.1:${service.port}/v1/flags/status`, { signal: AbortSignal.timeout(10_000) })
  ).json()) as FlagStatus;

/** /healthz asked every 100 ms for `ms`: every answer must come (a blocked event loop gives none). */
async function healthzKeepsAnswering(service: ServiceProcess, ms: number) {
  const statuses: number[] = [];
  const until = Date.now() + ms;
  while (Date.now() < until) {
    const res = await fetch(`http://127.0.0.1:${service.port}/healthz`, {
      signal: AbortSignal.timeout(10_000),
    });
    statuses.push(res.status);
    await new Promise((r) => setTimeout(r, 100));
  }
  return statuses;
}

describe('the flag file on the service process', () => {
  it('refuses a split flagd would ignore, a FIFO and a device at the flag path: counted, healthy, routing on the last good split', async () => {
    const dir = tempDir('delay-flag-file-');
    onTestFinished(() => rmSync(dir, { recursive: true, force: true }));
    const file = flagsFile({ mlWeight: 50 }, dir);
    const service = await startService({
      FLAGS_FILE: file,
      FLAGS_POLL_INTERVAL_MS: '100',
      DATA_DIR: join(dir, 'data'),
    });
    onTestFinished(async () => {
      await service.stop('SIGKILL');
    });
    await waitForReady(service, 60_000);
    const atStart = await variants(service);
    expect(new Set(atStart)).toEqual(new Set(['gbt-v2', 'heuristic']));
    const errors = async () =>
      (await scrapeMetrics(service.metricsPort))('delay_flags_config_errors_total', { source: 'file' });
    expect(await errors()).toBe(0);

    const refusals: { case: string; error: string; gauge: number; counted: number }[] = [];
    const refused = async (name: string, put: () => void, reason: string) => {
      put();
      const status = await eventually(
        () => flagStatus(service),
        (s) => !!s.last_error?.message.includes(reason),
      );
      expect((await healthzKeepsAnswering(service, 1500)).filter((code) => code !== 200)).toEqual([]);
      expect(status.ml_percentage).toBe(50);
      expect(await variants(service)).toEqual(atStart);
      const m = await scrapeMetrics(service.metricsPort);
      refusals.push({
        case: name,
        error: status.last_error?.message ?? '',
        gauge: m('delay_rollout_ml_percentage'),
        counted: m('delay_flags_config_errors_total', { source: 'file' }),
      });
    };

    await refused(
      'weights 0/0, a model as default',
      () => {
        const doc = flagsDocument({ mlWeight: 0 });
        doc.flags['delay-model'].defaultVariant = 'gbt-v2';
        doc.flags['delay-model'].targeting.fractional = [
          ['gbt-v2', 0],
          ['heuristic', 0],
        ];
        writeFlags(file, doc);
      },
      'the fractional weights add up to 0',
    );
    await refused(
      'a FIFO',
      () => {
        execFileSync('mkfifo', [`${file}.fifo`]);
        renameSync(`${file}.fifo`, file);
      },
      'a FIFO, not a regular file',
    );
    await refused(
      'a symlink to /dev/zero',
      () => {
        symlinkSync('/dev/zero', `${file}.link`);
        renameSync(`${file}.link`, file);
      },
      'a character device, not a regular file',
    );

    expect(refusals.map((r) => [r.case, r.gauge, r.counted])).toEqual([
      ['weights 0/0, a model as default', 50, 1],
      ['a FIFO', 50, 2],
      ['a symlink to /dev/zero', 50, 3],
    ]);

    // A good file after all that applies as usual.
    rmSync(file);
    writeFlags(file, flagsDocument({ mlWeight: 0 }));
    await eventually(
      () => variants(service),
      (v) => v.every((variant) => variant === 'heuristic'),
    );
    const recovered = await flagStatus(service);
    expect(recovered).toMatchObject({ ml_percentage: 0, last_error: null });
    expect(await service.stop('SIGTERM')).toBe(0);
  }, 120_000);
});
