import { describe, expect, it } from 'vitest';
import { eventually, silentLogger, testMetrics } from '../test-support/harness.js';
import { VersionNotRegisteredError } from './model-errors.js';
import { createModelRegistry, type ModelPredictor } from './model-registry.js';
import { loadOnnxModel } from './onnx-model.js';

const fakeModel = (version: string): ModelPredictor => ({ version, predict: async () => [] });

describe('model registry', () => {
  it('preloads the versions the flag names, once each', async () => {
    const loads: string[] = [];
    const registry = createModelRegistry({
      load: async (version) => {
        loads.push(version);
        return fakeModel(version);
      },
      logger: silentLogger,
      metrics: testMetrics().metrics,
    });
    expect(registry.ready()).toBe(false);
    await registry.preload(['gbt-v2', 'gbt-v3']);
    await registry.preload(['gbt-v2']);
    expect(registry.ready()).toBe(true);
    expect(loads).toEqual(['gbt-v2', 'gbt-v3']);
    expect(registry.versions()).toEqual(['gbt-v2', 'gbt-v3']);
    expect(registry.lookup('gbt-v3')).toMatchObject({ ok: true, model: { version: 'gbt-v3' } });
  });

  it('loads the real ONNX model from models/', async () => {
    const registry = createModelRegistry({
      load: (version) => loadOnnxModel('models', version),
      logger: silentLogger,
      metrics: testMetrics().metrics,
    });
    await registry.preload(['gbt-v2']);
    expect(registry.versions()).toEqual(['gbt-v2']);
  });

  it('answers unavailable with the load error, counts it, and retries later', async () => {
    const m = testMetrics();
    let fail = true;
    const registry = createModelRegistry({
      load: async (version) => {
        if (fail) throw new Error('truncated protobuf');
        return fakeModel(version);
      },
      logger: silentLogger,
      metrics: m.metrics,
      retryAfterMs: 50,
    });
    await registry.preload(['gbt-v4']);
    expect(registry.lookup('gbt-v4')).toEqual({
      ok: false,
      reason: 'model_unavailable',
      detail: 'model gbt-v4 failed to load: truncated protobuf',
    });
    expect(
      await m.value('delay.models.load_errors', { model_version: 'gbt-v4', reason: 'invalid_artifact' }),
    ).toBe(1);
    fail = false;
    await new Promise((r) => setTimeout(r, 60));
    const found = await eventually(
      () => registry.lookup('gbt-v4'),
      (l) => l.ok,
    );
    expect(found.ok).toBe(true);
  });

  it('counts a refusal under its reason: a version the registry does not hold is not_registered', async () => {
    const m = testMetrics();
    const registry = createModelRegistry({
      load: async (version) => {
        throw new VersionNotRegisteredError(version, 'the model registry (test)');
      },
      logger: silentLogger,
      metrics: m.metrics,
    });
    await registry.preload(['gbt-v7']);
    expect(registry.lookup('gbt-v7')).toMatchObject({
      ok: false,
      detail: expect.stringContaining('it is not registered in the model registry (test)'),
    });
    expect(
      await m.value('delay.models.load_errors', { model_version: 'gbt-v7', reason: 'not_registered' }),
    ).toBe(1);
    expect(await m.value('delay.models.load_errors', { reason: 'invalid_artifact' })).toBe(0);
  });

  it('starts loading a version first met in a request, without blocking it', async () => {
    let release = () => {};
    const gate = new Promise<void>((r) => {
      release = r;
    });
    const registry = createModelRegistry({
      load: async (version) => {
        await gate;
        return fakeModel(version);
      },
      logger: silentLogger,
      metrics: testMetrics().metrics,
    });
    await registry.preload([]);
    expect(registry.lookup('gbt-v5')).toMatchObject({
      ok: false,
      detail: expect.stringContaining('is loading'),
    });
    release();
    expect(
      (
        await eventually(
          () => registry.lookup('gbt-v5'),
          (l) => l.ok,
        )
      ).ok,
    ).toBe(true);
  });
});
