import { eq, isNotNull } from 'drizzle-orm';
import { afterEach, describe, expect, it } from 'vitest';
import { predictions } from '../../db/schema.js';
import { booking, eventually, postJson, tempDir } from '../test-support/harness.js';
import { migratedDataDir } from '../test-support/process.js';
import { testService } from '../test-support/service.js';
import { onnxEditorAvailable, writeShiftedModel } from '../test-support/shifted-model.js';

/*
 * SHADOW_MODEL_VERSION: a registered challenger scores every booking beside the served answer, is stored with it
 * and paired on feedback, and never answers a request, even when it is missing.
 */
const running: { close(): Promise<void> }[] = [];
afterEach(async () => {
  for (const s of running.splice(0)) await s.close();
});

const hasOnnx = onnxEditorAvailable();

describe.skipIf(!hasOnnx)('a shadow challenger', () => {
  it('scores every booking, is stored beside the answer and paired on feedback, and serves none', async () => {
    const modelsDir = tempDir('delay-shadow-models-');
    // gbt-v3 answers gbt-v2's delay + 2 min: a challenger whose every answer is known.
    writeShiftedModel(modelsDir, 'gbt-v3', 2);
    const service = await testService({
      flags: { mlWeight: 50, modelVersion: 'gbt-v2' },
      env: { MODELS_DIR: modelsDir, SHADOW_MODEL_VERSION: 'gbt-v3', DATA_DIR: await migratedDataDir() },
    });
    running.push(service);

    const bookings = Array.from({ length: 40 }, (_, i) => booking({ booking_id: `shadow-${i}` }));
    const res = await postJson(service.app, '/v1/predictions/batch', { bookings });
    expect(res.status).toBe(200);
    const answered = (
      (await res.json()) as { predictions: { variant: string; model_version: string | null }[] }
    ).predictions;
    // The challenger answers nobody: the flag's split is all there is.
    expect(new Set(answered.map((p) => p.variant))).toEqual(new Set(['gbt-v2', 'heuristic']));
    expect(answered.some((p) => p.model_version === 'gbt-v3')).toBe(false);

    const rows = await eventually(
      () => service.database.db.select().from(predictions).where(isNotNull(predictions.shadowModelDelay)),
      (r) => r.length === 40,
    );
    for (const row of rows) {
      expect(row.shadowModelVersion).toBe('gbt-v3');
      if (row.source === 'ml') expect(row.shadowModelDelay).toBeCloseTo(row.delayMinutes + 2, 2);
    }
    expect(await service.metricValue('delay.shadow.predictions', { outcome: 'scored' })).toBe(40);

    // Feedback 1 min above every served answer.
    const actual = new Map(rows.map((r) => [r.bookingId, r.delayMinutes + 1]));
    const posted = await postJson(service.app, '/v1/feedback/batch', {
      feedback: [...actual].map(([booking_id, actual_delay_minutes]) => ({
        booking_id,
        actual_delay_minutes,
      })),
    });
    expect(posted.status).toBe(200);
    const mlServed = rows.filter((r) => r.source === 'ml').length;
    expect(await service.metricValue('delay.shadow.pairs', { against: 'rules' })).toBe(40);
    expect(await service.metricValue('delay.shadow.pairs', { against: 'served_model' })).toBe(mlServed);
    // Against the serving model: challenger 1 min off (2 - 1), the served answer 1 min off too.
    expect(
      await service.metricValue('delay.shadow.absolute_error', {
        against: 'served_model',
        answer: 'challenger',
      }),
    ).toBeCloseTo(mlServed, 1);
    expect(
      await service.metricValue('delay.shadow.absolute_error', {
        against: 'served_model',
        answer: 'opponent',
      }),
    ).toBeCloseTo(mlServed, 1);
  });

  it('answers every booking when the challenger is not registered, and says so in its counter', async () => {
    const service = await testService({
      flags: { mlWeight: 100, modelVersion: 'gbt-v2' },
      env: { SHADOW_MODEL_VERSION: 'gbt-v9', DATA_DIR: await migratedDataDir() },
    });
    running.push(service);
    const res = await postJson(service.app, '/v1/predictions', booking({ booking_id: 'no-challenger' }));
    expect(res.status).toBe(200);
    expect(((await res.json()) as { source: string }).source).toBe('ml');
    const [row] = await eventually(
      () => service.database.db.select().from(predictions).where(eq(predictions.bookingId, 'no-challenger')),
      (r) => r.length === 1,
    );
    expect(row).toMatchObject({ shadowModelVersion: null, shadowModelDelay: null });
    expect(await service.metricValue('delay.shadow.predictions', { outcome: 'unavailable' })).toBe(1);
    expect(
      await service.metricValue('delay.models.load_errors', { model_version: 'gbt-v9' }),
    ).toBeGreaterThan(0);
  });
});
