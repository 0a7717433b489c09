import { copyFileSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { FEATURE_NAMES } from '../features/booking-features.js';
import { tempDir, testMetrics } from '../test-support/harness.js';
import { expectParity } from '../test-support/parity.js';
import { loadOnnxModel, ModelTimeoutError } from './onnx-model.js';

describe('the committed model gbt-v2', () => {
  it('answers like the trainer on 1,000 rows, within 1e-4', async () => {
    const { fixture } = await expectParity('models', 'gbt-v2');
    expect(fixture.features).toHaveLength(1000);
  });

  it('has contributions that sum to the prediction minus the expected value, within 0.01 min', async () => {
    const { model, scored } = await expectParity('models', 'gbt-v2');
    for (const row of scored) {
      const sum = row.all_contributions.reduce((s, c) => s + c, row.floor_minutes);
      expect(Math.abs(model.card.expected_value + sum - row.delay_minutes)).toBeLessThanOrEqual(0.01);
    }
  });

  it('adds up also when it floors the delay at 0: a floor_at_zero factor carries what the floor added', async () => {
    const model = await loadOnnxModel('models', 'gbt-v2');
    // 00:30 on a Tuesday, 0.8 km, urgent, dry: the trees sum below 0.
    const night = [0.5, 2, 0, 8, 0.8, 1.6, 0, 2, 15, 0, 0, 3, 10, 0];
    const [row] = await model.score(new Float32Array(night), 1);
    if (!row) throw new Error('no row scored');
    const sum = row.all_contributions.reduce((s, c) => s + c, model.card.expected_value);
    expect(sum).toBeLessThan(-0.05);
    expect(row.delay_minutes).toBe(0);
    expect(row.floor_minutes).toBeCloseTo(-sum, 6);
    const floor = row.contributing_factors.at(-1);
    expect(floor).toMatchObject({
      factor: 'floor_at_zero',
      label: expect.stringMatching(/^no delay below 0: \+0\.\d min$/),
    });
    expect(Math.abs(sum + row.floor_minutes - row.delay_minutes)).toBeLessThanOrEqual(0.001);
  });

  it('never crosses its interval, and labels the top contributions', async () => {
    const { scored } = await expectParity('models', 'gbt-v2');
    for (const row of scored) {
      expect(row.interval.low).toBeLessThanOrEqual(row.delay_minutes);
      expect(row.interval.high).toBeGreaterThanOrEqual(row.delay_minutes);
      expect(row.interval.level).toBe(0.8);
      expect(row.contributing_factors.length).toBe(5);
      expect(row.contributing_factors[0]?.label).toMatch(/^[a-z_]+ -?[\d.]+ \S+: [+-]\d+\.\d min$/);
    }
  });
});

describe('concurrent predictions', () => {
  it('share one ONNX Runtime call and get the answers of their own rows', async () => {
    const { metrics, value } = testMetrics();
    const model = await loadOnnxModel('models', 'gbt-v2', { inferenceRows: metrics.inferenceRows });
    const { scored, fixture } = await expectParity('models', 'gbt-v2');
    const requests = [[0], [1, 2, 3], [4], [5, 6]].map((rows) =>
      rows.map((i) => fixture.features[i] as number[]),
    );

    const answers = await Promise.all(requests.map((vectors) => model.predict(vectors)));

    expect(await value('delay.models.inference_rows', { model_version: 'gbt-v2' })).toBe(1);
    expect(answers.map((a) => a.length)).toEqual([1, 3, 1, 2]);
    answers.flat().forEach((answer, i) => {
      expect(answer.delay_minutes).toBeCloseTo((scored[i] as { delay_minutes: number }).delay_minutes, 5);
      expect(answer.contributing_factors).toEqual(scored[i]?.contributing_factors);
    });
    await model.predict([fixture.features[7] as number[]]);
    expect(await value('delay.models.inference_rows', { model_version: 'gbt-v2' })).toBe(2);
  });

  it('fail alone when their row has the wrong width, beside rows that are answered', async () => {
    const model = await loadOnnxModel('models', 'gbt-v2');
    const { scored, fixture } = await expectParity('models', 'gbt-v2');
    const [before, wrong, after] = await Promise.allSettled([
      model.predict([fixture.features[0] as number[]]),
      model.predict([[1, 2]]),
      model.predict([fixture.features[1] as number[]]),
    ]);
    expect(wrong).toMatchObject({
      status: 'rejected',
      reason: { message: `gbt-v2 expects ${FEATURE_NAMES.length} features per row, got 2` },
    });
    expect(before).toMatchObject({
      status: 'fulfilled',
      value: [{ contributing_factors: scored[0]?.contributing_factors }],
    });
    expect(after).toMatchObject({
      status: 'fulfilled',
      value: [{ contributing_factors: scored[1]?.contributing_factors }],
    });
  });
});

describe('scheduling and timing inference', () => {
  it('scores a single prediction before the rows of a large batch waiting with it', async () => {
    const { metrics, value } = testMetrics();
    const model = await loadOnnxModel('models', 'gbt-v2', { inferenceRows: metrics.inferenceRows });
    const { fixture } = await expectParity('models', 'gbt-v2');
    const row = (i: number) => fixture.features[i % fixture.features.length] as number[];
    const settled: string[] = [];
    const large = model
      .predict(Array.from({ length: 3000 }, (_, i) => row(i)))
      .then(() => settled.push('batch of 3,000'));
    const single = model.predict([row(7)]).then(() => settled.push('single'));
    await Promise.all([large, single]);
    expect(settled).toEqual(['single', 'batch of 3,000']);
    // Calls of 250 rows at most: the single rides in the first, with 249 rows of the batch.
    expect(await value('delay.models.inference_rows', { model_version: 'gbt-v2' })).toBe(13);
  });

  it("rejects with ModelTimeoutError when the model's own call is slower than its timeout", async () => {
    // A call of 250 rows takes some 6 ms of CPU: over a 1 ms timeout, however busy the machine.
    const model = await loadOnnxModel('models', 'gbt-v2', { timeoutMs: 1 });
    const { fixture } = await expectParity('models', 'gbt-v2');
    const failed = await model.predict(fixture.features).catch((err: unknown) => err);
    expect(failed).toBeInstanceOf(ModelTimeoutError);
    expect(failed).toMatchObject({ modelVersion: 'gbt-v2', timeoutMs: 1 });
    expect((failed as ModelTimeoutError).inferenceMs).toBeGreaterThan(1);
  });

  it('leaves out of its clock the time rows wait for the event loop before the model starts', async () => {
    const model = await loadOnnxModel('models', 'gbt-v2', { timeoutMs: 100 });
    const { fixture } = await expectParity('models', 'gbt-v2');
    const answered = model.predict([fixture.features[0] as number[]]);
    // 300 ms of other work between the call and the model's turn.
    const until = performance.now() + 300;
    while (performance.now() < until) {
      // the event loop is held
    }
    await expect(answered).resolves.toHaveLength(1);
  });
});

describe('loading a model', () => {
  it('refuses a card whose feature schema differs from the service', async () => {
    const dir = tempDir();
    copyFileSync('models/gbt-v2.onnx', join(dir, 'gbt-v2.onnx'));
    const card = JSON.parse(readFileSync('models/gbt-v2.json', 'utf8'));
    card.feature_schema = card.feature_schema.slice(1);
    writeFileSync(join(dir, 'gbt-v2.json'), JSON.stringify(card));
    await expect(loadOnnxModel(dir, 'gbt-v2')).rejects.toThrow(
      `this service computes [${FEATURE_NAMES.join(', ')}]`,
    );
  });

  it('refuses a card whose drift bins and baseline ratios disagree', async () => {
    const dir = tempDir();
    copyFileSync('models/gbt-v2.onnx', join(dir, 'gbt-v2.onnx'));
    const card = JSON.parse(readFileSync('models/gbt-v2.json', 'utf8'));
    card.drift.features[0].baseline_ratios.pop();
    writeFileSync(join(dir, 'gbt-v2.json'), JSON.stringify(card));
    await expect(loadOnnxModel(dir, 'gbt-v2')).rejects.toThrow('one baseline ratio per bin');
  });

  it('fails on a corrupted ONNX file', async () => {
    const dir = tempDir();
    copyFileSync('models/gbt-v2.json', join(dir, 'gbt-v2.json'));
    writeFileSync(join(dir, 'gbt-v2.onnx'), readFileSync('models/gbt-v2.onnx').subarray(0, 2000));
    await expect(loadOnnxModel(dir, 'gbt-v2')).rejects.toThrow();
  });

  it('fails on a missing card', async () => {
    await expect(loadOnnxModel(tempDir(), 'gbt-v9')).rejects.toThrow(/gbt-v9\.json/);
  });
});
