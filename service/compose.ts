import type { Meter, Tracer } from '@opentelemetry/api';
import type { Logger } from 'pino';
import { createApp } from './app.js';
import { connectRedis, redisReady } from './cache/redis.js';
import type { Config } from './config/config.js';
import type { WeatherProvider } from './domain/weather.js';
import { createDriftMonitor, followServingModel } from './drift/drift-monitor.js';
import { createFeedbackService } from './feedback/feedback-service.js';
import { startFlagService } from './flags/flag-service.js';
import { flagStoreFor } from './flags/flag-store.js';
import { ModelVersionError, RegistryUnavailableError } from './models/model-errors.js';
import { createModelRegistry, MODEL_RETRY_MS, type ModelPredictor } from './models/model-registry.js';
import { createModelSeeder } from './models/model-seeds.js';
import { createModelStore } from './models/model-store.js';
import { onnxModelFromArtifact } from './models/onnx-model.js';
import { bookingRefs, randomBookingRefKey } from './privacy/booking-ref.js';
import { createReports, scheduleRetention } from './reports/reports.js';
import { createAutoPromoter } from './rollout/auto-promoter.js';
import { advisoryLockLeadership, soleLeadership } from './rollout/leadership.js';
import { createRollbackLatch } from './rollout/rollback-latch.js';
import { createRolloutService } from './rollout/rollout-service.js';
import { type Database, openDatabase } from './storage/database.js';
import { createPredictionLog } from './storage/prediction-log.js';
import { createLogger } from './telemetry/logger.js';
import { createServiceMetrics, initializeCounters } from './telemetry/service-metrics.js';
import { openWeatherMapClient } from './weather/openweathermap.js';
import { neutralWeatherProvider } from './weather/weather.js';
import { createWeatherService, type WeatherServiceOptions } from './weather/weather-service.js';

/** Loads a version from the model registry: its digest checked, then its card and graph. */
type OnnxLoader = (version: string) => Promise<ModelPredictor>;

/** A part that could not start; the server exits 1 with this message. */
export class ComposeError extends Error {
  override name = 'ComposeError';
}

/**
 * What the config alone cannot give: the telemetry the process started, and the stand-ins a replay or a test
 * puts in place of a real part (each named where it is used).
 */
export interface ComposeOptions {
  telemetry: { meter: Meter; tracer: Tracer };
  logger?: Logger;
  /** Loads a model version; by default `onnx`, the registry's ONNX loader recording into the service's metrics. */
  loadModel?: (version: string, onnx: OnnxLoader) => Promise<ModelPredictor>;
  /** The weather lookup; by default OpenWeatherMap with OPENWEATHER_API_KEY, neutral defaults without. */
  weather?: WeatherProvider;
  /** The prediction log's pause between writes; by default per database (docs/performance.md). */
  predictionLogFlushMs?: number;
}

/**
 * The one composition root: builds every part of the service from its config, in dependency order, for the
 * server, the in-process replays and the tests. `close` stops them in reverse order, writing the prediction
 * log's queue within `drainMs`.
 */
export async function composeService(config: Config, options: ComposeOptions) {
  const { telemetry } = options;
  const logger = options.logger ?? createLogger(config.logLevel);
  const metrics = createServiceMetrics(telemetry.meter);
  if (!config.bookingRefKey)
    logger.warn(
      'BOOKING_REF_KEY unset: booking pseudonyms in traces, logs and the prediction log differ per process; set it (or _FILE) so they match across replicas and restarts',
    );
  const bookingRef = bookingRefs(config.bookingRefKey ?? randomBookingRefKey());
  const closers: (() => Promise<unknown> | unknown)[] = [];

  let database: Database;
  try {
    database = await openDatabase(config.database);
  } catch (err) {
    await closeAll(closers);
    throw new ComposeError(
      `database ${config.database.url ? 'at DATABASE_URL' : `in DATA_DIR ${config.database.dataDir}`} cannot be opened or migrated: ${(err as Error).message}`,
    );
  }
  closers.push(() => database.close());
  logger.info({ database: database.kind }, 'database migrated');
  if (database.kind === 'pglite') {
    logger.warn(
      { data_dir: config.database.dataDir },
      'PGlite serves this process only (a second process on DATA_DIR is refused): set DATABASE_URL for several replicas',
    );
  }
  const flags = await startFlagService({ flags: config.flags, logger, metrics, bookingRef });
  closers.push(() => flags.close());
  // The model registry (docs/adr/0013-model-registry.md): versions live in the database every replica reads;
  // MODELS_DIR's pairs (the image's models/) are registered at start and at each flag change, so that npm start
  // serves a freshly trained pair, while no replica ever loads a file of its own.
  const modelStore = createModelStore(database.db, database.kind);
  const seed = createModelSeeder({ store: modelStore, dir: config.modelsDir, logger, metrics });
  let seeding = seed();
  const onnx: OnnxLoader = async (version) => {
    // A version a flag change names may be one this seeding registers.
    await seeding;
    const artifact = await modelStore.get(version).catch((err: unknown) => {
      throw err instanceof ModelVersionError
        ? err
        : new RegistryUnavailableError(version, modelStore.where, err as Error);
    });
    return onnxModelFromArtifact(artifact, {
      inferenceRows: metrics.inferenceRows,
      timeoutMs: config.mlTimeoutMs,
    });
  };
  const { loadModel } = options;
  const models = createModelRegistry({
    load: loadModel ? (version) => loadModel(version, onnx) : onnx,
    logger,
    metrics,
  });
  // The versions the flag names are loaded before traffic; in flagd mode the flag's variants are not known
  // here, and each version loads on the first booking routed to it.
  const declaredModels = () => flags.status().model_variants ?? [];
  const drift = createDriftMonitor(metrics);
  const chooseDriftBaseline = followServingModel(
    drift,
    {
      split: () => flags.status().split ?? [],
      loaded: () => models.versions(),
      baselineOf: (version) => {
        const found = models.lookup(version);
        return found.ok ? found.model.driftBaseline : undefined;
      },
    },
    logger,
  );
  // A shadow challenger is loaded like a served version; its load errors and counters are its own.
  const shadowVersion = config.shadowModelVersion;
  await models.preload([...declaredModels(), ...(shadowVersion ? [shadowVersion] : [])]);
  initializeCounters(metrics, declaredModels(), shadowVersion);
  chooseDriftBaseline();
  // A version added by a flag change gets its counters at 0 before its first booking, as increase() needs.
  flags.onChange(() => {
    initializeCounters(metrics, declaredModels(), shadowVersion);
    seeding = seed();
    void models.preload(declaredModels()).then(chooseDriftBaseline);
  });
  // A version that failed (pushed after the flag named it, a database that did not answer) is tried again.
  const retryModels = setInterval(() => {
    void models.preload(declaredModels()).then(chooseDriftBaseline);
  }, MODEL_RETRY_MS);
  retryModels.unref();
  closers.push(() => clearInterval(retryModels));
  // Once ready: 1 per version loaded, 0 per version the flag names that is not (DelayModelVersionNotLoaded).
  metrics.modelsLoaded.addCallback((result) => {
    if (!models.ready()) return;
    const loaded = new Set(models.versions());
    for (const version of new Set([...declaredModels(), ...loaded]))
      result.observe(loaded.has(version) ? 1 : 0, { model_version: version });
  });
  metrics.rolloutMlPercentage.addCallback((result) => {
    const percentage = flags.status().ml_percentage;
    if (percentage !== null) result.observe(percentage);
  });
  logger.info(
    { flags: flags.status().source, ml_percentage: flags.status().ml_percentage, models: models.versions() },
    'flags and model registry loaded',
  );

  const redis = config.redisUrl ? connectRedis(config.redisUrl, logger) : undefined;
  if (redis) {
    closers.push(() => redis.quit().catch(() => undefined));
    if (!(await redisReady(redis, 2000))) logger.warn('redis not reachable at start; serving without it');
  }
  const weather = options.weather ?? defaultWeather(config, { ...(redis ? { redis } : {}), metrics, logger });

  const predictionLog = createPredictionLog({
    insert: database.insertPredictions,
    bookingRef,
    tracer: telemetry.tracer,
    metrics,
    logger,
    // Postgres: small, frequent inserts (each holds the event loop while it is serialized) and large ones when
    // the queue is deep. PGlite runs on this thread: fewer, smaller batches (docs/performance.md).
    batchSize: database.kind === 'pglite' ? 100 : 2000,
    flushIntervalMs: options.predictionLogFlushMs ?? (database.kind === 'pglite' ? 200 : 20),
  });
  const reports = createReports(database.db, { logger, business: config.business });
  closers.push(() => reports.close());
  closers.push(scheduleRetention(reports, { days: config.database.retentionDays, logger }));

  // An automatic rollback holds until a person lifts it (docs/adr/0014-rollback-latch.md): shared through
  // flag_changes on Postgres, kept in this process on PGlite.
  const latch = createRollbackLatch({
    flags,
    db: database.db,
    shared: database.kind === 'postgres',
    source: flagSourceName(config),
    metrics,
    logger,
    pollMs: config.rollbackLatchPollMs,
  });
  await latch.start();
  closers.push(() => latch.close());
  const rollout = createRolloutService({
    store: flagStoreFor(config.flagStore, logger),
    db: database.db,
    metrics,
    logger,
    routing: flags,
    latch: latch.keeper,
    servable: async (version) => {
      seeding = seed();
      await seeding;
      await modelStore.require(version);
    },
  });
  // Before the database closes: audit rows still being written get their last chance.
  closers.push(() => rollout.close(2000));
  if (config.autoPromote) {
    const { prometheusUrl, selector, soakMs, intervalMs, minSamples } = config.autoPromote;
    // Every replica may run with AUTO_PROMOTE=true: the one holding the leader lock acts.
    const leadership = config.database.url
      ? advisoryLockLeadership(config.database.url, { logger })
      : soleLeadership;
    closers.push(() => leadership.close());
    const stop = createAutoPromoter({
      prometheusUrl,
      selector,
      rollout,
      flagStatus: () => flags.status(),
      logger,
      soakMs,
      minSamples,
      leadership,
      metrics,
    }).start(intervalMs);
    closers.push(stop);
    logger.info({ prometheus: prometheusUrl, selector, soak_s: soakMs / 1000 }, 'automatic promotion on');
  }
  warnOpenEndpoints(config, logger);

  const app = createApp({
    flags: latch.guard(flags),
    models,
    weather,
    metrics,
    logger,
    limits: { bodyLimitBytes: config.bodyLimitBytes, batchMaxBookings: config.batchMaxBookings },
    tracer: telemetry.tracer,
    drift,
    predictionLog,
    storage: {
      feedback: createFeedbackService({
        db: database.db,
        metrics,
        logger,
        liveHorizonMs: config.feedbackLiveHorizonMs,
        business: config.business,
        bookingRef,
      }),
      reports,
    },
    ...(config.feedbackToken ? { feedbackToken: config.feedbackToken } : {}),
    ...(config.predictionsToken ? { predictionsToken: config.predictionsToken } : {}),
    ...(config.reportsToken ? { reportsToken: config.reportsToken } : {}),
    ...(shadowVersion ? { shadowVersion } : {}),
    ...(config.webhookToken ? { rollback: { token: config.webhookToken, rollout } } : {}),
  });

  return {
    app,
    logger,
    metrics,
    flags,
    models,
    drift,
    database,
    predictionLog,
    rollout,
    latch,
    bookingRef,
    /** Writes the queued predictions (up to `drainMs`), then closes every part, the last built first. */
    async close(drainMs: number) {
      await predictionLog.drain(drainMs);
      await closeAll(closers);
    },
  };
}

export type Service = Awaited<ReturnType<typeof composeService>>;

/** Who asks for ML when the flag does, as a refused change's audit row names it. */
function flagSourceName(config: Config): string {
  const { flags, flagStore } = config;
  // On Kubernetes the flagd sidecar serves the FeatureFlag: the resource is what was re-applied.
  if (flagStore.kind === 'kubernetes') return `FeatureFlag ${flagStore.namespace}/${flagStore.name}`;
  return flags.kind === 'flagd' ? `flagd ${flags.host}:${flags.port}` : `flag file ${flags.file}`;
}

async function closeAll(closers: (() => Promise<unknown> | unknown)[]) {
  for (const close of closers.splice(0).reverse()) await close();
}

function defaultWeather(
  config: Config,
  parts: Pick<WeatherServiceOptions, 'redis' | 'metrics' | 'logger'>,
): WeatherProvider {
  if (!config.weather.apiKey) {
    parts.logger.info(
      'weather: no OPENWEATHER_API_KEY; predictions use neutral weather defaults (weather.source "default")',
    );
    return neutralWeatherProvider();
  }
  const { apiKey, baseUrl, ...settings } = config.weather;
  parts.logger.info(
    { base_url: baseUrl, shared_cache: !!parts.redis, daily_budget: settings.dailyBudget },
    'weather: OpenWeatherMap',
  );
  return createWeatherService({ client: openWeatherMapClient({ baseUrl, apiKey }), ...parts, ...settings });
}

function warnOpenEndpoints(config: Config, logger: Logger) {
  if (!config.webhookToken) {
    logger.warn(
      'rollback webhook disabled: set ALERTMANAGER_WEBHOOK_TOKEN (or _FILE) to enable /v1/webhooks/alertmanager',
    );
  }
  if (!config.predictionsToken) {
    logger.info(
      'prediction endpoints open to any caller (feedback scores the first prediction of a booking); set PREDICTIONS_TOKEN (or _FILE) to require a bearer token',
    );
  }
  if (!config.feedbackToken) {
    logger.warn(
      'feedback endpoints open to any caller: set FEEDBACK_TOKEN (or _FILE) to require a bearer token',
    );
  }
  if (!config.reportsToken) {
    logger.warn(
      'report and monitoring endpoints (booking ids, accuracy) open to any caller: set REPORTS_TOKEN (or _FILE) to require a bearer token',
    );
  }
}
