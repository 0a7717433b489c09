import { describe, expect, it } from 'vitest';
import { eventually, silentLogger, testMetrics } from '../test-support/harness.js';
import { createModelRegistry, type ModelPredictor } from './model-registry.js';
import { loadOnnxModel } from './onnx-model.js';

const fakeModel = (version: string): ModelPredictor => ({ version, predict: async () => [] });

describe('model registry', () => {
  it('preloads the versions the flag names, once each', async () => {
    const loads: string[] = [];
    const registry = createModelRegistry({
      dir: 'models',
      load: async (_dir, version) => {
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
      dir: 'models',
      load: loadOnnxModel,
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
      dir: 'models',
      load: async (_dir, version) => {
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
    expect(await m.value('delay.models.load_errors', { model_version: 'gbt-v4' })).toBe(1);
    fail = false;
    await new Promise((r) => setTimeout(r, 60));
    const found = await eventually(
      () => registry.lookup('gbt-v4'),
      (l) => l.ok,
    );
    expect(found.ok).toBe(true);
  });

  it('starts loading a version first met in a request, without blocking it', async () => {
    let release = () => {};
    const gate = new Promise<void>((r) => {
      release = r;
    });
    const registry = createModelRegistry({
      dir: 'models',
      load: async (_dir, version) => {
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
