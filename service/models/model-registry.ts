import { readdir } from 'node:fs/promises';
import { resolve } from 'node:path';
import type { BookingFeatures } from '../features/booking-features.js';
import type { PointEstimate } from '../predictors/heuristic.js';

/** A loaded model version, able to score many bookings in one call. */
export interface ModelPredictor {
  version: string;
  predict(features: BookingFeatures[]): Promise<PointEstimate[]>;
}

export type ModelLookup =
  | { ok: true; model: ModelPredictor }
  | { ok: false; reason: 'model_unavailable'; detail: string };

export interface ModelRegistry {
  ready(): boolean;
  /** Versions whose artifacts were found in the models folder. */
  versions(): string[];
  lookup(version: string): ModelLookup;
}

/**
 * The models folder as the service sees it: `<version>.onnx` next to `<version>.json` (its model card).
 * Scanning happens once at start, never on the prediction path. Versions that are not loaded answer
 * model_unavailable, which sends their bookings to the heuristic.
 */
export async function loadModelRegistry({ dir }: { dir: string }): Promise<ModelRegistry> {
  const folder = resolve(dir);
  let entries: string[] = [];
  try {
    entries = await readdir(folder);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  const found = entries
    .filter((name) => name.endsWith('.onnx') && entries.includes(name.replace(/\.onnx$/, '.json')))
    .map((name) => name.replace(/\.onnx$/, ''))
    .sort();
  return {
    ready: () => true,
    versions: () => found,
    // Loading ONNX sessions arrives with the model pipeline (issue 3); until then no version is served.
    lookup(version) {
      return {
        ok: false,
        reason: 'model_unavailable',
        detail: found.includes(version)
          ? `model ${version} found but this build serves no ONNX models yet`
          : `no model ${version} in ${folder} (expected ${version}.onnx and ${version}.json)`,
      };
    },
  };
}
