import type { Server } from 'node:http';
import { serve } from '@hono/node-server';
import { createApp } from './app.js';
import { connectRedis, redisReady } from './cache/redis.js';
import type { Config } from './config/config.js';
import { createDriftMonitor } from './drift/drift-monitor.js';
import { createFeedbackService } from './feedback/feedback-service.js';
import { FlagFileError, startFlagService } from './flags/flag-service.js';
import { createModelRegistry } from './models/model-registry.js';
import { loadOnnxModel } from './models/onnx-model.js';
import { createReports } from './reports/reports.js';
import { createAutoPromoter } from './rollout/auto-promoter.js';
import { createRolloutService } from './rollout/rollout-service.js';
import { openDatabase } from './storage/database.js';
import { createPredictionLog } from './storage/prediction-log.js';
import { createLogger } from './telemetry/logger.js';
import type { Telemetry } from './telemetry/otel.js';
import { startRuntimeMetrics } from './telemetry/runtime-metrics.js';
import { createServiceMetrics, initializeCounters } from './telemetry/service-metrics.js';
import { openWeatherMapClient } from './weather/openweathermap.js';
import { neutralWeatherProvider, type WeatherProvider } from './weather/weather.js';
import { createWeatherService } from './weather/weather-service.js';

function fail(message: string): never {
  process.stderr.write(`delay-prediction: ${message}\n`);
  process.exit(1);
}

/** Everything after telemetry: imported by main.ts once the NodeSDK patches what it instruments. */
export async function runServer(config: Config, telemetry: Telemetry) {
  const logger = createLogger(config.logLevel);
  const metrics = createServiceMetrics(telemetry.meter);
  startRuntimeMetrics(telemetry.meter);

  let flags: Awaited<ReturnType<typeof startFlagService>>;
  try {
    flags = await startFlagService({ flags: config.flags, logger, metrics });
  } catch (err) {
    if (err instanceof FlagFileError) fail(err.message);
    throw err;
  }
  const models = createModelRegistry({
    dir: config.modelsDir,
    load: (dir, version) => loadOnnxModel(dir, version, { inferenceRows: metrics.inferenceRows }),
    logger,
    metrics,
  });
  // The versions the flag names are loaded before traffic; in flagd mode the flag's variants are not known
  // here, and each version loads on the first booking routed to it.
  const declaredModels = () => flags.status().model_variants ?? [];
  // Drift is measured against the training distribution of the model taking the most traffic.
  const drift = createDriftMonitor(metrics);
  const chooseDriftBaseline = () => {
    const split = flags.status().split ?? [];
    const byWeight = [...split].sort((a, b) => b.weight - a.weight).map((s) => s.variant);
    for (const version of [...byWeight, ...models.versions()]) {
      const found = models.versions().includes(version) ? models.lookup(version) : null;
      if (found?.ok && found.model.driftBaseline) {
        if (drift.baselineVersion() !== version) logger.info({ model_version: version }, 'drift baseline');
        drift.setBaseline(found.model.driftBaseline);
        return;
      }
    }
  };
  await models.preload(declaredModels());
  initializeCounters(metrics, declaredModels());
  chooseDriftBaseline();
  // A version added by a flag change gets its counters at 0 before its first booking, as increase() needs.
  flags.onChange(() => {
    initializeCounters(metrics, declaredModels());
    void models.preload(declaredModels()).then(chooseDriftBaseline);
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
  if (redis && !(await redisReady(redis, 2000)))
    logger.warn('redis not reachable at start; serving without it');
  let weather: WeatherProvider;
  if (config.weather.apiKey) {
    const { apiKey, baseUrl, ...options } = config.weather;
    weather = createWeatherService({
      client: openWeatherMapClient({ baseUrl, apiKey }),
      redis,
      metrics,
      logger,
      ...options,
    });
    logger.info(
      { base_url: baseUrl, shared_cache: !!redis, daily_budget: options.dailyBudget },
      'weather: OpenWeatherMap',
    );
  } else {
    weather = neutralWeatherProvider();
    logger.info(
      'weather: no OPENWEATHER_API_KEY; predictions use neutral weather defaults (weather.source "default")',
    );
  }

  let database: Awaited<ReturnType<typeof openDatabase>>;
  try {
    database = await openDatabase(config.database);
  } catch (err) {
    fail(
      `database ${config.database.url ? 'at DATABASE_URL' : `in DATA_DIR ${config.database.dataDir}`} cannot be opened or migrated: ${(err as Error).message}`,
    );
  }
  logger.info({ database: database.kind }, 'database migrated');
  // PGlite runs inside this process: smaller batches keep each write's pause of the event loop near 10 ms.
  const predictionLog = createPredictionLog({
    insert: database.insertPredictions,
    tracer: telemetry.tracer,
    metrics,
    logger,
    // Postgres: small, frequent inserts (each holds the event loop while it is serialized) and large ones when
    // the queue is deep. PGlite runs on this thread: fewer, smaller batches (docs/performance.md).
    batchSize: database.kind === 'pglite' ? 100 : 2000,
    flushIntervalMs: database.kind === 'pglite' ? 200 : 20,
  });
  const reports = createReports(database.db);
  const purge = async () => {
    try {
      logger.info(
        {
          retention_days: config.database.retentionDays,
          ...(await reports.purge(config.database.retentionDays)),
        },
        'retention purge',
      );
    } catch (err) {
      logger.error({ err: (err as Error).message }, 'retention purge failed; next attempt in 24 h');
    }
  };
  void purge();
  setInterval(purge, 86_400_000).unref();

  const rollout = createRolloutService({
    flagsFile: config.flagsFile,
    db: database.db,
    metrics,
    logger,
    routing: flags,
  });
  if (config.autoPromote) {
    const { prometheusUrl, soakMs, intervalMs, minSamples } = config.autoPromote;
    createAutoPromoter({
      prometheusUrl,
      rollout,
      flagStatus: () => flags.status(),
      logger,
      soakMs,
      minSamples,
    }).start(intervalMs);
    logger.info({ prometheus: prometheusUrl, soak_s: soakMs / 1000 }, 'automatic promotion on');
  }
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
  const app = createApp({
    flags,
    models,
    weather,
    metrics,
    logger,
    limits: { bodyLimitBytes: config.bodyLimitBytes, batchMaxBookings: config.batchMaxBookings },
    mlTimeoutMs: config.mlTimeoutMs,
    tracer: telemetry.tracer,
    drift,
    predictionLog,
    storage: { feedback: createFeedbackService({ db: database.db, metrics, logger }), reports },
    ...(config.feedbackToken ? { feedbackToken: config.feedbackToken } : {}),
    ...(config.predictionsToken ? { predictionsToken: config.predictionsToken } : {}),
    ...(config.webhookToken
      ? {
          rollback: { token: config.webhookToken, rollout },
        }
      : {}),
  });

  // Node's defaults let a slow client hold a connection for minutes (5 min for a body, checked every 30 s).
  const serverOptions = {
    requestTimeout: config.requestTimeoutMs,
    headersTimeout: Math.ceil(config.requestTimeoutMs / 3),
    connectionsCheckingInterval: Math.min(1000, config.requestTimeoutMs),
  };
  const server = serve(
    { fetch: app.fetch, port: config.port, hostname: config.host, serverOptions },
    (info) => {
      logger.info({ port: info.port, metrics_port: config.metricsPort }, 'listening');
    },
  );

  let stopping = false;
  async function shutdown(signal: string) {
    if (stopping) return;
    stopping = true;
    logger.info({ signal }, 'draining in-flight requests');
    const deadline = setTimeout(() => {
      logger.error({ timeout_ms: config.shutdownTimeoutMs }, 'drain timed out; exiting');
      process.exit(1);
    }, config.shutdownTimeoutMs);
    deadline.unref();
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    // Connections that finish their last request sit idle in keep-alive; close them as they go idle.
    const sweep = setInterval(() => (server as Server).closeIdleConnections(), 50);
    await closed;
    clearInterval(sweep);
    await predictionLog.drain(Math.max(config.shutdownTimeoutMs - 1000, 500));
    await database.close();
    await flags.close();
    await redis?.quit().catch(() => undefined);
    await telemetry.shutdown();
    logger.info('stopped');
    process.exit(0);
  }
  process.on('SIGTERM', () => void shutdown('SIGTERM'));
  process.on('SIGINT', () => void shutdown('SIGINT'));
}
