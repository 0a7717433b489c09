import type { Logger } from 'pino';
import type { DriftBaseline } from '../domain/drift-baseline.js';
import type { PointEstimate } from '../domain/estimate.js';
import type { ShadowBaseline } from '../features/moments.js';
import { MODEL_LOAD_ERROR_REASONS, type ServiceMetrics } from '../telemetry/service-metrics.js';
import { ModelVersionError } from './model-errors.js';

/** A loaded model version, able to score many bookings in one call. */
export interface ModelPredictor {
  version: string;
  /** The registry digest of the artifact it was loaded from (absent for a stand-in built in a test). */
  digest?: string;
  /** The training distribution the drift monitor compares live traffic with (from the model card). */
  driftBaseline?: DriftBaseline;
  /**
   * What ML - shadow heuristic is for a booking on the card's holdout, by moment: the label-free signal's
   * baseline. A card without one leaves the version out of that signal (logged at load).
   */
  shadowBaseline?: ShadowBaseline;
  /** Scores feature vectors in FEATURE_SCHEMA order (`featureVector`), one call for the whole batch. */
  predict(vectors: number[][]): Promise<PointEstimate[]>;
}

export type ModelLookup =
  | { ok: true; model: ModelPredictor }
  | { ok: false; reason: 'model_unavailable'; detail: string };

/** How long a version that failed to load waits before it is tried again. */
export const MODEL_RETRY_MS = 30_000;

type LoadErrorReason = (typeof MODEL_LOAD_ERROR_REASONS)[number];

export interface ModelRegistry {
  ready(): boolean;
  /** Versions loaded and serving. */
  versions(): string[];
  lookup(version: string): ModelLookup;
}

type Slot =
  | { state: 'loading' }
  | { state: 'loaded'; model: ModelPredictor }
  | { state: 'failed'; error: string; at: number };

export interface RegistryOptions {
  /** Loads a version from the model registry; a ModelVersionError names the reason it is counted under. */
  load: (version: string) => Promise<ModelPredictor>;
  logger: Logger;
  metrics: ServiceMetrics;
  /** A version that failed to load is tried again after this long, when asked for. */
  retryAfterMs?: number;
}

/** A ModelVersionError's reason when it is one a load can fail with; any other failure is the artifact's. */
function loadErrorReason(err: unknown): LoadErrorReason {
  const reason = err instanceof ModelVersionError ? err.reason : undefined;
  return MODEL_LOAD_ERROR_REASONS.find((r) => r === reason) ?? 'invalid_artifact';
}

/**
 * Model versions from the model registry, each loaded once. `preload` loads the versions the flag names before
 * traffic reaches them; a version first met in a request (a flag change not yet preloaded) starts loading in
 * the background while that request falls back. Loaded versions stay loaded, so a rollback to the previous
 * version is instant.
 */
export function createModelRegistry({
  load,
  logger,
  metrics,
  retryAfterMs = MODEL_RETRY_MS,
}: RegistryOptions) {
  const log = logger.child({ component: 'models' });
  const slots = new Map<string, Slot>();
  let preloaded = false;

  async function ensure(version: string): Promise<void> {
    const slot = slots.get(version);
    if (slot && (slot.state !== 'failed' || Date.now() - slot.at < retryAfterMs)) return;
    slots.set(version, { state: 'loading' });
    const started = performance.now();
    try {
      const model = await load(version);
      slots.set(version, { state: 'loaded', model });
      log.info(
        { model_version: version, digest: model.digest, load_ms: Math.round(performance.now() - started) },
        'model loaded',
      );
      if (!model.shadowBaseline)
        log.warn(
          { model_version: version },
          'the model card has no shadow baseline: the label-free rollback signal does not judge this version',
        );
    } catch (err) {
      const error = (err as Error).message;
      const reason = loadErrorReason(err);
      slots.set(version, { state: 'failed', error, at: Date.now() });
      metrics.modelLoadErrors.add(1, { model_version: version, reason });
      log.error(
        { model_version: version, reason, err: error },
        'model failed to load; its bookings fall back',
      );
    }
  }

  return {
    ready: () => preloaded,
    versions: () => [...slots].filter(([, s]) => s.state === 'loaded').map(([v]) => v),

    /**
     * Loads the given versions (those the flag names), and tries again those that failed over `retryAfterMs`
     * ago; resolves when each has loaded or failed.
     */
    async preload(versions: string[]) {
      await Promise.all(versions.map(ensure));
      preloaded = true;
    },

    lookup(version: string): ModelLookup {
      const slot = slots.get(version);
      if (slot?.state === 'loaded') return { ok: true, model: slot.model };
      if (!slot || slot.state === 'failed') void ensure(version);
      const detail =
        slot?.state === 'failed'
          ? `model ${version} failed to load: ${slot.error}`
          : `model ${version} is loading from the model registry`;
      return { ok: false, reason: 'model_unavailable', detail };
    },
  };
}
