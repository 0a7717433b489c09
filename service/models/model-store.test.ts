import { copyFileSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { eq } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { modelVersions } from '../../db/schema.js';
import type { Database } from '../storage/database.js';
import { freshPglite, freshPostgres, postgresAvailable } from '../test-support/databases.js';
import { silentLogger, tempDir, testMetrics } from '../test-support/harness.js';
import {
  CardMismatchError,
  DigestMismatchError,
  FeatureSchemaError,
  InvalidArtifactError,
  VersionConflictError,
  VersionNotRegisteredError,
  VersionRetiredError,
} from './model-errors.js';
import { createModelSeeder } from './model-seeds.js';
import { canonicalJson, createModelStore, type ModelStore, modelDigest } from './model-store.js';

const GRAPH = new Uint8Array(readFileSync('models/gbt-v2.onnx'));
const CARD = JSON.parse(readFileSync('models/gbt-v2.json', 'utf8')) as Record<string, unknown> & {
  onnx: Record<string, unknown>;
  feature_schema: { name: string; unit: string }[];
};
/** gbt-v2's graph under a card of `version`'s own, `changes` applied. */
const cardOf = (version: string, changes: Record<string, unknown> = {}) => ({
  ...CARD,
  version,
  onnx: { ...CARD.onnx, file: `${version}.onnx` },
  ...changes,
});

const hasPostgres = await postgresAvailable();

describe.each([
  { name: 'Postgres', open: freshPostgres, skip: !hasPostgres },
  { name: 'PGlite', open: freshPglite, skip: false },
])('the model registry on $name', ({ open, skip }) => {
  let database: Database;
  let store: ModelStore;
  beforeAll(async () => {
    if (skip) return;
    database = await open();
    store = createModelStore(database.db, database.kind);
  }, 120_000);
  afterAll(() => database?.close());

  it.skipIf(skip)(
    'holds gbt-v1 retired from the migration: it is listed, never served, never registered again',
    async () => {
      expect(await store.list()).toContainEqual(
        expect.objectContaining({ version: 'gbt-v1', retired: true, digest: null, onnxBytes: null }),
      );
      await expect(store.get('gbt-v1')).rejects.toThrow(VersionRetiredError);
      await expect(store.require('gbt-v1')).rejects.toThrow(
        /the name is retired \(served three different artifacts/,
      );
      await expect(
        store.push({ version: 'gbt-v1', card: cardOf('gbt-v1'), onnx: GRAPH, by: 'test' }),
      ).rejects.toThrow(VersionRetiredError);
    },
  );

  it.skipIf(skip)(
    'registers a version once, accepts the same bytes again, and gives them back verified',
    async () => {
      const first = await store.push({ version: 'gbt-v2', card: CARD, onnx: GRAPH, by: 'test' });
      expect(first).toEqual({ outcome: 'registered', version: 'gbt-v2', digest: modelDigest(GRAPH, CARD) });
      expect(first.digest).toMatch(/^sha256:[0-9a-f]{64}$/);
      // The same artifact, its card's keys in another order: the same digest.
      const reordered = Object.fromEntries(Object.entries(CARD).reverse());
      expect(await store.push({ version: 'gbt-v2', card: reordered, onnx: GRAPH, by: 'again' })).toEqual({
        ...first,
        outcome: 'unchanged',
      });
      const artifact = await store.get('gbt-v2');
      expect(artifact.digest).toBe(first.digest);
      expect(Buffer.from(artifact.onnx).equals(Buffer.from(GRAPH))).toBe(true);
      // The card as stored (jsonb: keys reordered, numbers re-read) hashes as the card pushed.
      expect(canonicalJson(artifact.card)).toBe(canonicalJson(CARD));
      const shown = await store.show('gbt-v2');
      expect(shown).toMatchObject({
        registeredBy: 'test',
        retired: false,
        onnxBytes: GRAPH.byteLength,
        features: 14,
      });
      expect(shown.card).toEqual(CARD);
    },
  );

  it.skipIf(skip)(
    'refuses a known name with other bytes, naming both digests, and keeps the first',
    async () => {
      const other = cardOf('gbt-v2', { expected_value: (CARD.expected_value as number) + 0.5 });
      const refused = store.push({ version: 'gbt-v2', card: other, onnx: GRAPH, by: 'test' });
      await expect(refused).rejects.toThrow(VersionConflictError);
      await expect(refused).rejects.toThrow(
        `gbt-v2 is registered with digest ${modelDigest(GRAPH, CARD)}; this artifact's is ${modelDigest(GRAPH, other)}`,
      );
      expect((await store.get('gbt-v2')).digest).toBe(modelDigest(GRAPH, CARD));
    },
  );

  it.skipIf(skip)('binds a name to one artifact when two are pushed at once', async () => {
    const a = cardOf('gbt-v20');
    const b = cardOf('gbt-v20', { expected_value: 0 });
    const outcomes = await Promise.allSettled([
      store.push({ version: 'gbt-v20', card: a, onnx: GRAPH, by: 'a' }),
      store.push({ version: 'gbt-v20', card: b, onnx: GRAPH, by: 'b' }),
    ]);
    expect(outcomes.map((o) => o.status).sort()).toEqual(['fulfilled', 'rejected']);
    const refused = outcomes.find((o) => o.status === 'rejected') as PromiseRejectedResult;
    expect(refused.reason).toBeInstanceOf(VersionConflictError);
    expect([modelDigest(GRAPH, a), modelDigest(GRAPH, b)]).toContain((await store.get('gbt-v20')).digest);
  });

  it.skipIf(skip)(
    'refuses what the service could not serve under that name, and registers nothing',
    async () => {
      const push = (version: string, card: unknown, onnx = GRAPH) =>
        store.push({ version, card, onnx, by: 'test' });
      await expect(push('gbt-v4', cardOf('gbt-v3'))).rejects.toThrow(CardMismatchError);
      await expect(push('gbt-v4', cardOf('gbt-v3'))).rejects.toThrow(
        'the card offered as gbt-v4 describes gbt-v3',
      );
      await expect(
        push('gbt-v4', { ...cardOf('gbt-v4'), onnx: { ...CARD.onnx, file: 'gbt-v2.onnx' } }),
      ).rejects.toThrow('names its graph gbt-v2.onnx, not gbt-v4.onnx');
      await expect(
        push('gbt-v4', cardOf('gbt-v4', { feature_schema: CARD.feature_schema.slice(1) })),
      ).rejects.toThrow(FeatureSchemaError);
      const fahrenheit = CARD.feature_schema.map((f) =>
        f.name === 'temperature_c' ? { ...f, unit: '°F' } : f,
      );
      await expect(push('gbt-v4', cardOf('gbt-v4', { feature_schema: fahrenheit }))).rejects.toThrow(
        'gbt-v4 expects temperature_c in °F; this service computes it in °C',
      );
      await expect(push('gbt-v4', cardOf('gbt-v4'), GRAPH.subarray(0, 2000))).rejects.toThrow(
        /^gbt-v4: ONNX Runtime cannot load the graph/,
      );
      await expect(push('gbt-v4', { version: 'gbt-v4' })).rejects.toThrow(InvalidArtifactError);
      for (const name of ['../models/gbt-v2', '', 'heuristic', 'gbt v4'])
        await expect(push(name, cardOf(name))).rejects.toThrow(InvalidArtifactError);
      await expect(store.get('gbt-v4')).rejects.toThrow(VersionNotRegisteredError);
      await expect(store.require('gbt-v9')).rejects.toThrow(
        /^no model "gbt-v9" the service can load: it is not registered in the model registry \((Postgres at DATABASE_URL|PGlite in DATA_DIR)\); register it with npm run models -- push gbt-v9$/,
      );
    },
  );

  it.skipIf(skip)('refuses at load a version whose stored bytes no longer match its digest', async () => {
    await store.push({ version: 'gbt-v5', card: cardOf('gbt-v5'), onnx: GRAPH, by: 'test' });
    await database.db
      .update(modelVersions)
      .set({ onnx: GRAPH.subarray(0, GRAPH.byteLength - 1) })
      .where(eq(modelVersions.version, 'gbt-v5'));
    await expect(store.get('gbt-v5')).rejects.toThrow(DigestMismatchError);
    await expect(store.get('gbt-v5')).rejects.toThrow(
      /^gbt-v5's stored artifact hashes to sha256:[0-9a-f]{64}, not to/,
    );
  });

  it.skipIf(skip)(
    "seeds MODELS_DIR's pairs, refuses one bound elsewhere to other bytes, and tells each refusal once",
    async () => {
      const dir = tempDir('delay-seeds-');
      for (const ext of ['onnx', 'json']) copyFileSync(`models/gbt-v2.${ext}`, join(dir, `gbt-v2.${ext}`));
      copyFileSync('models/gbt-v2.parity.json', join(dir, 'gbt-v2.parity.json'));
      // gbt-v6 registered from elsewhere; the folder holds other bytes under that name.
      await store.push({ version: 'gbt-v6', card: cardOf('gbt-v6'), onnx: GRAPH, by: 'elsewhere' });
      copyFileSync('models/gbt-v2.onnx', join(dir, 'gbt-v6.onnx'));
      writeFileSync(join(dir, 'gbt-v6.json'), JSON.stringify(cardOf('gbt-v6', { expected_value: 1 })));
      copyFileSync('models/gbt-v2.onnx', join(dir, 'gbt-v7.onnx'));
      writeFileSync(join(dir, 'gbt-v7.json'), JSON.stringify(cardOf('gbt-v7')));
      const m = testMetrics();
      const seed = createModelSeeder({ store, dir, logger: silentLogger, metrics: m.metrics });
      const first = await seed();
      expect(first.registered).toEqual(['gbt-v7']);
      expect(first.refused).toEqual([
        {
          version: 'gbt-v6',
          reason: 'version_conflict',
          error: expect.stringContaining('gbt-v6 is registered with digest'),
        },
      ]);
      expect((await store.show('gbt-v7')).registeredBy).toBe(`seed:${dir}`);
      expect((await store.get('gbt-v6')).digest).toBe(modelDigest(GRAPH, cardOf('gbt-v6')));
      const again = await seed();
      expect(again.registered).toEqual([]);
      expect(again.refused.map((r) => r.version)).toEqual(['gbt-v6']);
      expect(await m.value('delay.models.seeds_refused', { reason: 'version_conflict' })).toBe(1);
      // A folder that is not there seeds nothing and fails nothing.
      const none = createModelSeeder({
        store,
        dir: join(dir, 'absent'),
        logger: silentLogger,
        metrics: m.metrics,
      });
      expect(await none()).toEqual({ registered: [], refused: [] });
    },
  );
});
