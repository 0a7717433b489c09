import { type Tracer, trace } from '@opentelemetry/api';
import type { Logger } from 'pino';
import type { Booking } from '../domain/booking.js';
import type { FallbackReason, PointEstimate } from '../domain/estimate.js';
import { HEURISTIC_VARIANT } from '../domain/flags.js';
import { NEUTRAL_WEATHER, type WeatherLookup, type WeatherProvider } from '../domain/weather.js';
import type { DriftMonitor } from '../drift/drift-monitor.js';
import { bookingFeatures, featureVector } from '../features/booking-features.js';
import { expectedShadowGap } from '../features/moments.js';
import type { FlagService, VariantAssignment } from '../flags/flag-service.js';
import type { ModelRegistry } from '../models/model-registry.js';
import { ModelTimeoutError } from '../models/onnx-model.js';
import { heuristicEstimate } from '../predictors/heuristic.js';
import { confidenceOf, riskLevelOf } from '../predictors/risk.js';
import type { PredictionLog } from '../storage/prediction-log.js';
import { PREDICTION_SOURCES, type ServiceMetrics } from '../telemetry/service-metrics.js';
import { inSpan } from '../telemetry/spans.js';
import type { Prediction } from './schemas.js';

/** ML failed for some bookings and the ml-fallback-on-error flag is off: the request cannot be answered. */
export class MlUnavailableError extends Error {
  constructor(
    readonly reason: FallbackReason,
    readonly modelVersion: string,
    detail: string,
  ) {
    super(detail);
    this.name = 'MlUnavailableError';
  }
}

export interface PredictionServiceDeps {
  flags: FlagService;
  models: ModelRegistry;
  tracer: Tracer;
  /** Counts served feature values into the baseline's training bins (PSI); absent in most tests. */
  drift?: DriftMonitor;
  /** Where served predictions are kept; without it nothing is stored (tests, benchmarks). */
  predictionLog?: PredictionLog;
  weather: WeatherProvider;
  metrics: ServiceMetrics;
  logger: Logger;
  /**
   * A registered challenger scored on every booking beside the served answer and stored with it, never served:
   * its feedback pairs it with the rules and the serving model before a canary (docs/adr/0016-shadow-scoring.md).
   */
  shadowVersion?: string;
}

export type Endpoint = 'single' | 'batch';

interface Routed {
  estimate: PointEstimate;
  source: 'ml' | 'heuristic';
  modelVersion: string | null;
  fallbackReason: FallbackReason | null;
}

const round3 = (x: number) => Math.round(x * 1000) / 1000;

/** Flag evaluations of a batch between two turns of the event loop. */
const EVALUATIONS_PER_TURN = 100;

const DISABLED_WEATHER: WeatherLookup = { source: 'disabled', conditions: null };

interface RecordContext {
  endpoint: Endpoint;
  vectors: number[][];
  heuristics: PointEstimate[];
  challenger: PointEstimate[] | null;
  startedAt: number;
  traceId: string | null;
}

export function createPredictionService({
  flags,
  models,
  weather,
  metrics,
  logger,
  predictionLog,
  tracer,
  drift,
  shadowVersion,
}: PredictionServiceDeps) {
  const log = logger.child({ component: 'predictions' });

  /**
   * Step 1: the delay-model flag's variant for each booking (its id is the fractional split's key). A batch's
   * evaluations run in groups with a turn of the event loop between them: 1,000 at once hold it for some 30 ms
   * of promise callbacks, which every single prediction arriving meanwhile would wait for.
   */
  const assign = (bookings: Booking[]) =>
    inSpan(tracer, 'feature_flag.evaluation delay-model', { 'delay.bookings': bookings.length }, async () => {
      const assignments: VariantAssignment[] = [];
      for (let from = 0; from < bookings.length; from += EVALUATIONS_PER_TURN) {
        if (from > 0) await new Promise((resolve) => setImmediate(resolve));
        const group = bookings.slice(from, from + EVALUATIONS_PER_TURN).map((b) =>
          flags.modelVariant(b.booking_id, {
            priority: b.priority ?? 'standard',
            ...(b.company_id ? { company_id: b.company_id } : {}),
          }),
        );
        assignments.push(...(await Promise.all(group)));
      }
      return assignments;
    });

  /** Step 2: weather (when the flag asks for it), features and the model's input vectors, counted for drift. */
  async function enrich(bookings: Booking[]) {
    const lookups = flags.weatherEnrichment()
      ? await inSpan(tracer, 'weather.lookup', { 'delay.bookings': bookings.length }, () =>
          Promise.all(bookings.map((b) => weather.lookup(b))),
        )
      : null;
    const weatherOf = (i: number) => lookups?.[i] ?? DISABLED_WEATHER;
    const features = bookings.map((b, i) => bookingFeatures(b, weatherOf(i).conditions));
    const vectors = features.map((f) => featureVector(f, NEUTRAL_WEATHER));
    drift?.observe(
      vectors,
      bookings.map((_, i) => weatherOf(i).source),
    );
    return { features, vectors, weatherOf };
  }

  /**
   * Step 3: one model call per version for the bookings assigned to it; a failure or a timeout leaves them
   * on the heuristic (or throws with the fallback flag off). Returns null or why the version failed. The model
   * times itself (ModelTimeoutError, ML_TIMEOUT_MS): what the bookings waited for the event loop or for other
   * requests' rows is load, not the model, and never a fallback that could roll it back.
   */
  async function scoreWithModel(
    version: string,
    indexes: number[],
    vectors: number[][],
    heuristics: PointEstimate[],
    routed: Routed[],
  ) {
    const found = models.lookup(version);
    if (!found.ok) return { reason: found.reason, detail: found.detail };
    try {
      const scored = await inSpan(
        tracer,
        'model.inference',
        { 'delay.model_version': version, 'delay.bookings': indexes.length },
        () => found.model.predict(indexes.map((i) => vectors[i] as number[])),
      );
      // How far ML sits from the rules on the same bookings, and how far that is from what the card's holdout
      // shows for the same moment: a broken model shows before its feedback does (docs/adr/0007).
      const baseline = found.model.shadowBaseline;
      let gap = 0;
      let above = 0;
      let below = 0;
      indexes.forEach((bookingIndex, k) => {
        const signed =
          (scored[k] as PointEstimate).delay_minutes -
          (heuristics[bookingIndex] as PointEstimate).delay_minutes;
        gap += Math.abs(signed);
        if (baseline) {
          const departure = signed - expectedShadowGap(baseline, vectors[bookingIndex] as number[]);
          if (departure > 0) above += departure;
          else below -= departure;
        }
        routed[bookingIndex] = {
          estimate: scored[k] as PointEstimate,
          source: 'ml',
          modelVersion: version,
          fallbackReason: null,
        };
      });
      metrics.shadowGap.add(gap, { model_version: version });
      metrics.shadowCompared.add(indexes.length, { model_version: version });
      if (baseline) {
        metrics.shadowDeparture.add(above, { model_version: version, direction: 'above' });
        metrics.shadowDeparture.add(below, { model_version: version, direction: 'below' });
        metrics.shadowDepartureCompared.add(indexes.length, { model_version: version });
      }
      return null;
    } catch (err) {
      const reason = err instanceof ModelTimeoutError ? ('model_timeout' as const) : ('model_error' as const);
      return { reason, detail: (err as Error).message };
    }
  }

  async function score(assignments: VariantAssignment[], vectors: number[][], heuristics: PointEstimate[]) {
    const routed: Routed[] = heuristics.map((estimate, i) => ({
      estimate,
      source: 'heuristic',
      modelVersion: null,
      fallbackReason: assignments[i]?.error
        ? 'flag_error'
        : assignments[i]?.latched
          ? 'rollback_latch'
          : null,
    }));
    const byVersion = new Map<string, number[]>();
    assignments.forEach((a, i) => {
      if (a.variant === HEURISTIC_VARIANT) return;
      const group = byVersion.get(a.variant);
      if (group) group.push(i);
      else byVersion.set(a.variant, [i]);
    });
    for (const [version, indexes] of byVersion) {
      const failure = await scoreWithModel(version, indexes, vectors, heuristics, routed);
      if (!failure) continue;
      if (!flags.fallbackOnError()) throw new MlUnavailableError(failure.reason, version, failure.detail);
      // A missing or slow model is counted, not logged per request (load errors log once); a model that
      // throws is a bug worth every line.
      log[failure.reason === 'model_error' ? 'error' : 'debug'](
        { model_version: version, reason: failure.reason, err: failure.detail, bookings: indexes.length },
        'ML fell back to the heuristic',
      );
      metrics.fallbacks.add(indexes.length, { reason: failure.reason, model_version: version });
      for (const i of indexes) (routed[i] as Routed).fallbackReason = failure.reason;
    }
    return routed;
  }

  /**
   * Beside step 3: the shadow challenger's answers for every booking, or null. Never the request's answer, never
   * its failure: a challenger missing, loading, failing or slow leaves its answers empty, counted by outcome.
   */
  async function shadowScore(vectors: number[][]): Promise<PointEstimate[] | null> {
    if (!shadowVersion) return null;
    const model_version = shadowVersion;
    const found = models.lookup(shadowVersion);
    if (!found.ok) {
      metrics.shadowPredictions.add(vectors.length, { model_version, outcome: 'unavailable' });
      return null;
    }
    try {
      const scored = await inSpan(
        tracer,
        'model.inference shadow',
        { 'delay.model_version': shadowVersion, 'delay.bookings': vectors.length },
        () => found.model.predict(vectors),
      );
      metrics.shadowPredictions.add(vectors.length, { model_version, outcome: 'scored' });
      return scored;
    } catch (err) {
      const outcome = err instanceof ModelTimeoutError ? 'model_timeout' : 'model_error';
      metrics.shadowPredictions.add(vectors.length, { model_version, outcome });
      log.debug({ model_version, err: (err as Error).message }, 'the shadow challenger did not score');
      return null;
    }
  }

  /** Step 4: the API's answers, and one counter update per label set (a batch of 1,000 has a handful). */
  function answer(
    bookings: Booking[],
    assignments: VariantAssignment[],
    routed: Routed[],
    weatherOf: (i: number) => WeatherLookup,
    endpoint: Endpoint,
  ): Prediction[] {
    const counts = new Map<string, { source: string; variant: string; n: number }>();
    const highRisk = { ml: 0, heuristic: 0 };
    const answered = bookings.map((booking, i) => {
      const r = routed[i] as Routed;
      const variant = (assignments[i] as VariantAssignment).variant;
      const key = `${r.source}\u0000${variant}`;
      const count = counts.get(key);
      if (count) count.n += 1;
      else counts.set(key, { source: r.source, variant, n: 1 });
      const { delay_minutes, interval, contributing_factors } = r.estimate;
      const risk_level = riskLevelOf(delay_minutes, interval);
      if (risk_level === 'high') highRisk[r.source] += 1;
      return {
        booking_id: booking.booking_id,
        delay_minutes: round3(delay_minutes),
        interval: { low: round3(interval.low), high: round3(interval.high), level: interval.level },
        confidence: confidenceOf(interval),
        risk_level,
        contributing_factors,
        source: r.source,
        fallback_reason: r.fallbackReason,
        model_version: r.modelVersion,
        variant,
        weather: { source: weatherOf(i).source },
      };
    });
    for (const { source, variant, n } of counts.values())
      metrics.predictions.add(n, { source, variant, endpoint });
    // Proactive reassignment candidates: the bookings a dispatcher is told are at high risk.
    for (const source of PREDICTION_SOURCES)
      if (highRisk[source] > 0) metrics.businessReassignmentCandidates.add(highRisk[source], { source });
    return answered;
  }

  /** Step 5: the answers as stored, with the vectors the model saw and the heuristic's shadow answer. */
  function record(
    answered: Prediction[],
    { endpoint, vectors, heuristics, challenger, startedAt, traceId }: RecordContext,
  ) {
    if (!predictionLog) return;
    const predictedAt = new Date();
    const latencyMs = performance.now() - startedAt;
    predictionLog.enqueue(
      answered.map((p, i) => ({
        bookingId: p.booking_id,
        predictedAt,
        endpoint,
        source: p.source,
        variant: p.variant,
        modelVersion: p.model_version,
        fallbackReason: p.fallback_reason,
        delayMinutes: p.delay_minutes,
        intervalLow: p.interval.low,
        intervalHigh: p.interval.high,
        shadowHeuristicDelay: (heuristics[i] as PointEstimate).delay_minutes,
        shadowModelVersion: challenger ? (shadowVersion ?? null) : null,
        shadowModelDelay: challenger?.[i]?.delay_minutes ?? null,
        features: vectors[i] as number[],
        weatherSource: p.weather.source,
        latencyMs,
        traceId,
      })),
    );
  }

  /** Scores bookings in order: one flag evaluation per booking, one model call per model version. */
  async function predict(bookings: Booking[], endpoint: Endpoint): Promise<Prediction[]> {
    const startedAt = performance.now();
    const traceId = trace.getActiveSpan()?.spanContext().traceId ?? null;
    const assignments = await assign(bookings);
    const { features, vectors, weatherOf } = await enrich(bookings);
    // The heuristic answers every booking: as the fallback, and as the shadow an ML answer is compared with.
    const heuristics = features.map(heuristicEstimate);
    const [routed, challenger] = await Promise.all([
      score(assignments, vectors, heuristics),
      shadowScore(vectors),
    ]);
    const answered = answer(bookings, assignments, routed, weatherOf, endpoint);
    record(answered, { endpoint, vectors, heuristics, challenger, startedAt, traceId });
    return answered;
  }

  return { predict };
}

export type PredictionService = ReturnType<typeof createPredictionService>;
