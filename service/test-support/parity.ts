import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { expect } from 'vitest';
import { loadOnnxModel } from '../models/onnx-model.js';

interface ParityFixture {
  version: string;
  features: number[][];
  delay: number[];
  low: number[];
  high: number[];
  contributions: number[][];
}

/** Node's output for the trainer's fixture rows equals the trainer's own, within `tolerance`. */
export async function expectParity(dir: string, version: string, tolerance = 1e-4) {
  const fixture = JSON.parse(readFileSync(join(dir, `${version}.parity.json`), 'utf8')) as ParityFixture;
  const model = await loadOnnxModel(dir, version);
  const n = fixture.features.length;
  const rows = Float32Array.from(fixture.features.flat());
  const scored = await model.score(rows, n);
  let worst = 0;
  scored.forEach((row, i) => {
    worst = Math.max(
      worst,
      Math.abs(row.delay_minutes - (fixture.delay[i] as number)),
      Math.abs(row.interval.low - (fixture.low[i] as number)),
      Math.abs(row.interval.high - (fixture.high[i] as number)),
      ...row.all_contributions.map((c, f) => Math.abs(c - (fixture.contributions[i]?.[f] as number))),
    );
  });
  expect(worst).toBeLessThanOrEqual(tolerance);
  return { model, scored, fixture, worst };
}
