import { NEUTRAL_WEATHER } from '../service/domain/weather.js';
import { bookingFeatures, featureVector } from '../service/features/booking-features.js';
import { loadOnnxModel } from '../service/models/onnx-model.js';
import { type ScoredBooking, segmentFigures, segmentsOfRow } from '../service/retraining/segment-figures.js';
import type { RawBooking } from './generator.js';

/** The feature vectors of generated bookings, as the service computes them. */
export const vectorsOf = (rows: readonly RawBooking[]) =>
  rows.map((r) => featureVector(bookingFeatures(r.booking, r.weather), NEUTRAL_WEATHER));

/**
 * A model version's figures on generated holdout bookings, overall and per segment, through the service's own
 * ONNX inference, next to the generator's oracle on the same bookings. The segments' reference delay is the
 * generator's true median.
 */
export async function scoreHoldout(dir: string, version: string, rows: readonly RawBooking[]) {
  const model = await loadOnnxModel(dir, version);
  const vectors = vectorsOf(rows);
  const scored = await model.score(Float32Array.from(vectors.flat()), vectors.length);
  const segments = rows.map((r, i) => segmentsOfRow(vectors[i] as number[], r.median_delay_minutes));
  const modelRows: ScoredBooking[] = rows.map((r, i) => {
    const s = scored[i] as (typeof scored)[number];
    return {
      actual: r.actual_delay_minutes,
      delay: s.delay_minutes,
      low: s.interval.low,
      high: s.interval.high,
      segments: segments[i] as ScoredBooking['segments'],
    };
  });
  const oracleRows: ScoredBooking[] = rows.map((r, i) => ({
    actual: r.actual_delay_minutes,
    delay: r.median_delay_minutes,
    low: r.oracle_interval.low,
    high: r.oracle_interval.high,
    segments: segments[i] as ScoredBooking['segments'],
  }));
  return { model: segmentFigures(modelRows), oracle: segmentFigures(oracleRows) };
}
