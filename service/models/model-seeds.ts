import { resolve } from 'node:path';
import type { Logger } from 'pino';
import { MODEL_SEED_REFUSAL_REASONS, type ServiceMetrics } from '../telemetry/service-metrics.js';
import { ModelVersionError } from './model-errors.js';
import { type ModelStore, modelPairsIn, readModelFiles } from './model-store.js';

type SeedRefusalReason = (typeof MODEL_SEED_REFUSAL_REASONS)[number];

export interface SeedOutcome {
  registered: string[];
  refused: { version: string; reason: SeedRefusalReason; error: string }[];
}

/**
 * Registers every model pair of `dir` (`<v>.onnx` + `<v>.json`; the image's models/ folder) that the registry does
 * not hold yet: what `npm start` and a fresh database serve without a push. A pair whose name is bound to another
 * digest, retired, or not a model the service reads is refused: logged and counted once per process, never fatal,
 * and the registered version is what every replica loads.
 */
export function createModelSeeder({
  store,
  dir,
  logger,
  metrics,
}: {
  store: ModelStore;
  dir: string;
  logger: Logger;
  metrics: ServiceMetrics;
}) {
  const folder = resolve(dir);
  const log = logger.child({ component: 'models', models_dir: folder });
  // A refusal is told once: the seeding runs again at every flag change.
  const told = new Set<string>();
  const tell = (key: string) => !told.has(key) && Boolean(told.add(key));

  return async function seed(): Promise<SeedOutcome> {
    const outcome: SeedOutcome = { registered: [], refused: [] };
    let pairs: string[];
    try {
      pairs = await modelPairsIn(folder);
    } catch (err) {
      if (tell(`dir:${(err as Error).message}`))
        log.warn(
          { err: (err as Error).message },
          'MODELS_DIR cannot be read: nothing seeds the model registry',
        );
      return outcome;
    }
    for (const version of pairs) {
      try {
        const { card, onnx } = await readModelFiles(folder, version);
        const pushed = await store.push({ version, card, onnx, by: `seed:${folder}` });
        if (pushed.outcome === 'registered') {
          outcome.registered.push(version);
          log.info({ model_version: version, digest: pushed.digest }, 'model registered from MODELS_DIR');
        }
      } catch (err) {
        const refused = err instanceof ModelVersionError ? err.reason : 'registry_unavailable';
        const reason = MODEL_SEED_REFUSAL_REASONS.find((r) => r === refused) ?? 'invalid_artifact';
        const error = (err as Error).message;
        outcome.refused.push({ version, reason, error });
        if (tell(`${version}:${error}`)) {
          metrics.modelSeedsRefused.add(1, { reason });
          log.error(
            { model_version: version, reason, err: error },
            'model in MODELS_DIR not registered: the registry keeps what it holds under that name',
          );
        }
      }
    }
    return outcome;
  };
}

export type ModelSeeder = ReturnType<typeof createModelSeeder>;
