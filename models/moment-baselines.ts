import { bookingFeatures } from '../service/features/booking-features.js';
import { loadOnnxModel } from '../service/models/onnx-model.js';
import { heuristicEstimate } from '../service/predictors/heuristic.js';
import { withMomentBaselines } from '../service/retraining/moment-baselines.js';
import type { RawBooking } from './generator.js';
import { vectorsOf } from './holdout.js';

/** The moment baselines of the model in `dir` (service/retraining/moment-baselines.ts), on generated rows. */
export async function withGeneratedMomentBaselines<Card extends Record<string, unknown>>(
  card: Card,
  { dir, version, train, test }: { dir: string; version: string; train: RawBooking[]; test: RawBooking[] },
) {
  return withMomentBaselines(card, {
    model: await loadOnnxModel(dir, version),
    trainVectors: vectorsOf(train),
    testVectors: vectorsOf(test),
    heuristicDelays: test.map((r) => heuristicEstimate(bookingFeatures(r.booking, r.weather)).delay_minutes),
  });
}
