import { readFileSync } from 'node:fs';
import { z } from 'zod';
import { type BusinessSettings, DEFAULT_LATE_THRESHOLD_MINUTES } from '../domain/business.js';
import { HEURISTIC_VARIANT } from '../domain/flags.js';
import { PROMOTION } from '../domain/rollback-policy.js';

/**
 * The one place that reads the environment. Precedence: typed defaults < environment < explicit options.
 * Every variable here is listed in docs/configuration.md (readme.test.ts checks it).
 */

const port = z.coerce.number().int().min(0).max(65_535);
const positiveInt = z.coerce.number().int().positive();
const optionalString = z
  .string()
  .trim()
  .transform((value) => (value === '' ? undefined : value))
  .optional();
/** A bearer token: a header carries only visible ASCII, so any other character could never match. */
const VISIBLE_ASCII = /^[\x21-\x7E]+$/;
const TOKEN_CHARACTERS =
  'visible ASCII characters only (no spaces, no accents): no request header could match it';
const token = optionalString.pipe(
  z
    .string()
    .min(16, 'at least 16 characters')
    .regex(VISIBLE_ASCII, `must hold ${TOKEN_CHARACTERS}`)
    .optional(),
);

const configSchema = z.object({
  PORT: port.default(8080),
  HOST: z.string().min(1).default('0.0.0.0'),
  LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  FLAGS_FILE: z.string().min(1).default('flagd/flags.json'),
  FLAGS_POLL_INTERVAL_MS: positiveInt.max(60_000).default(1000),
  ROLLBACK_LATCH_POLL_INTERVAL_MS: positiveInt.min(100).max(60_000).default(5000),
  FLAGD_HOST: optionalString,
  FLAGD_PORT: port.default(8015),
  FLAGS_FEATUREFLAG: optionalString.pipe(
    z
      .string()
      .regex(
        /^[a-z0-9]([-a-z0-9]*[a-z0-9])?\/[a-z0-9]([-.a-z0-9]*[a-z0-9])?$/,
        'namespace/name of a FeatureFlag',
      )
      .optional(),
  ),
  KUBERNETES_API_URL: optionalString.pipe(z.url().optional()),
  DEPLOYMENT_ENVIRONMENT: optionalString,
  KUBERNETES_SERVICE_HOST: optionalString,
  KUBERNETES_SERVICE_PORT: port.default(443),
  KUBERNETES_TOKEN_FILE: z.string().min(1).default('/var/run/secrets/kubernetes.io/serviceaccount/token'),
  KUBERNETES_CA_FILE: z.string().min(1).default('/var/run/secrets/kubernetes.io/serviceaccount/ca.crt'),
  MODELS_DIR: z.string().min(1).default('models'),
  OPENWEATHER_API_KEY: optionalString,
  OPENWEATHER_BASE_URL: z.url().default('https://api.openweathermap.org'),
  REDIS_URL: optionalString,
  WEATHER_GRID_DEG: z.coerce.number().min(0.01).max(1).default(0.1),
  WEATHER_CURRENT_TTL_S: positiveInt.max(86_400).default(600),
  WEATHER_FORECAST_TTL_S: positiveInt.max(86_400).default(3600),
  WEATHER_STALE_MAX_S: positiveInt.max(7 * 86_400).default(6 * 3600),
  WEATHER_DAILY_BUDGET: z.coerce.number().int().min(0).max(10_000_000).default(1000),
  WEATHER_TIMEOUT_MS: positiveInt.max(10_000).default(300),
  WEATHER_API_TIMEOUT_MS: positiveInt.max(60_000).default(1000),
  WEATHER_AUTH_RETRY_S: positiveInt.max(7 * 86_400).default(3600),
  DATABASE_URL: optionalString,
  DATABASE_PASSWORD_FILE: optionalString,
  DATA_DIR: z.string().min(1).default('data'),
  RETENTION_DAYS: positiveInt.max(3650).default(90),
  FEEDBACK_LIVE_HORIZON_HOURS: positiveInt.max(24 * 365).default(48),
  LATE_THRESHOLD_MINUTES: z.coerce
    .number()
    .positive()
    .max(24 * 60)
    .default(DEFAULT_LATE_THRESHOLD_MINUTES),
  COST_PER_DELAY_MINUTE: z.coerce.number().min(0).optional(),
  REPORT_WEBHOOK_URL: optionalString.pipe(z.url({ protocol: /^https?$/ }).optional()),
  ALERTMANAGER_WEBHOOK_TOKEN: token,
  ALERTMANAGER_WEBHOOK_TOKEN_FILE: optionalString,
  FEEDBACK_TOKEN: token,
  FEEDBACK_TOKEN_FILE: optionalString,
  PREDICTIONS_TOKEN: token,
  PREDICTIONS_TOKEN_FILE: optionalString,
  REPORTS_TOKEN: token,
  REPORTS_TOKEN_FILE: optionalString,
  BOOKING_REF_KEY: optionalString.pipe(z.string().min(16, 'at least 16 characters').optional()),
  BOOKING_REF_KEY_FILE: optionalString,
  AUTO_PROMOTE: z.enum(['true', 'false']).default('false'),
  PROMETHEUS_URL: optionalString.pipe(z.url().optional()),
  AUTO_PROMOTE_SOAK_S: positiveInt.default(86_400),
  AUTO_PROMOTE_INTERVAL_S: positiveInt.default(300),
  // A step the rollback's slow paired rule could not have judged is never promoted.
  AUTO_PROMOTE_MIN_SAMPLES: positiveInt
    .min(PROMOTION.minSamples, `at least ${PROMOTION.minSamples}, the rollback rules' sample guard`)
    .default(PROMOTION.minSamples),
  // PromQL label matchers, comma-separated: name, operator, a double-quoted value.
  AUTO_PROMOTE_SELECTOR: z
    .string()
    .regex(
      /^\s*[A-Za-z_]\w*\s*(=|!=|=~|!~)\s*"(?:[^"\\]|\\.)*"\s*(,\s*[A-Za-z_]\w*\s*(=|!=|=~|!~)\s*"(?:[^"\\]|\\.)*"\s*)*$/,
      'PromQL label matchers, e.g. job="delay-prediction", namespace="delay"',
    )
    .default('job="delay-prediction"'),
  // A registered challenger scored beside every answer, never served (docs/adr/0016-shadow-scoring.md).
  SHADOW_MODEL_VERSION: optionalString.pipe(
    z
      .string()
      .regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/, 'a model version name, e.g. gbt-v3')
      .refine((v) => v !== HEURISTIC_VARIANT, 'the heuristic is scored on every booking already')
      .optional(),
  ),
  ML_TIMEOUT_MS: positiveInt.max(60_000).default(250),
  BODY_LIMIT_BYTES: positiveInt.max(64 * 1024 * 1024).default(1024 * 1024),
  BATCH_MAX_BOOKINGS: positiveInt.max(10_000).default(1000),
  METRICS_PORT: port.default(9464),
  OTEL_EXPORTER_OTLP_ENDPOINT: optionalString.pipe(z.url().optional()),
  TRACE_SAMPLE_RATIO: z.coerce.number().min(0).max(1).default(1),
  SHUTDOWN_TIMEOUT_MS: positiveInt.max(120_000).default(10_000),
  REQUEST_TIMEOUT_MS: positiveInt.min(1000).max(600_000).default(30_000),
});

export type EnvName = keyof z.input<typeof configSchema>;

/** The weather service's tunables (docs/configuration.md: WEATHER_*). */
export interface WeatherSettings {
  gridDeg: number;
  currentTtlMs: number;
  forecastTtlMs: number;
  staleMaxMs: number;
  dailyBudget: number;
  /** What a prediction waits for weather at most. */
  lookupTimeoutMs: number;
  /** What one API call may take (it goes on filling the cache after a lookup gave up on it). */
  apiTimeoutMs: number;
  /** After a 401, how long before the key is tried again. */
  authRetryMs: number;
}

export interface Config {
  port: number;
  host: string;
  logLevel: 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';
  flags:
    | { kind: 'file'; file: string; pollIntervalMs: number }
    | { kind: 'flagd'; host: string; port: number; pollIntervalMs: number };
  /** The flag file the rollback webhook and the rollout CLI rewrite (in flagd mode, the file flagd serves). */
  flagsFile: string;
  /** How often each replica reads the rollback latch from flag_changes (Postgres). */
  rollbackLatchPollMs: number;
  /** Where changes to the rollout are written: the flag file, or a FeatureFlag through the Kubernetes API. */
  flagStore:
    | { kind: 'file'; file: string }
    | {
        kind: 'kubernetes';
        namespace: string;
        name: string;
        apiUrl: string;
        tokenFile: string;
        caFile: string;
      };
  modelsDir: string;
  mlTimeoutMs: number;
  /** A challenger scored in shadow on every booking, stored beside the answer, never served. */
  shadowModelVersion: string | undefined;
  /** The Prometheus scraping this deployment: the promoter's judge, the daily report's SLO budget. */
  prometheusUrl: string | undefined;
  /** Optional automatic promotion along 10, 25, 50, 100 (off by default). */
  autoPromote: {
    prometheusUrl: string;
    /** Label matchers of this deployment's series in that Prometheus. */
    selector: string;
    soakMs: number;
    intervalMs: number;
    minSamples: number;
  } | null;
  /** The rollback webhook's bearer token; unset: the webhook route is not served. Never logged. */
  webhookToken: string | undefined;
  /** The bearer token of the feedback endpoints; unset: they are open (warned at start). Never logged. */
  feedbackToken: string | undefined;
  predictionsToken: string | undefined;
  /** The bearer token of the report and monitoring endpoints; unset: they are open (warned at start). Never logged. */
  reportsToken: string | undefined;
  /** The key of booking pseudonyms (service/privacy/booking-ref.ts); unset: a random key per process. Never logged. */
  bookingRefKey: string | undefined;
  redisUrl: string | undefined;
  database: { url: string | undefined; dataDir: string; retentionDays: number };
  /** Feedback for a prediction served longer ago goes to the reports, not to the live error counters. */
  feedbackLiveHorizonMs: number;
  /** What a late booking is, and what a minute of buffer costs: the business figures (service/domain/business.ts). */
  business: BusinessSettings;
  /** Where `npm run report -- daily` posts its Markdown (a chat's incoming webhook); unset: printed only. Never logged. */
  reportWebhookUrl: string | undefined;
  weather: WeatherSettings & {
    /** Never logged. */
    apiKey: string | undefined;
    baseUrl: string;
  };
  bodyLimitBytes: number;
  batchMaxBookings: number;
  metricsPort: number;
  /** The OpenTelemetry resource's deployment.environment.name (production, staging); unset: not sent. */
  deploymentEnvironment: string | undefined;
  /** OTLP/HTTP collector root (traces go to /v1/traces); unset: spans are not exported. */
  otlpEndpoint: string | undefined;
  /** Share of traces started here that are recorded and exported; a caller's sampled trace is always followed. */
  traceSampleRatio: number;
  shutdownTimeoutMs: number;
  /** The longest a request may take to arrive whole (headers and body); its headers get a third of it. */
  requestTimeoutMs: number;
}

export class ConfigError extends Error {
  constructor(readonly problems: { variable: string; message: string }[]) {
    super(`invalid configuration: ${problems.map((p) => `${p.variable}: ${p.message}`).join('; ')}`);
    this.name = 'ConfigError';
  }
}

/** A secret from a file (compose and Kubernetes secrets), trimmed; a missing or short file is a ConfigError. */
function readSecret(variable: string, file: string | undefined, minLength = 16): string | undefined {
  if (!file) return undefined;
  let value: string;
  try {
    value = readFileSync(file, 'utf8').trim();
  } catch (err) {
    throw new ConfigError([
      { variable, message: `cannot read ${file}: ${(err as NodeJS.ErrnoException).code}` },
    ]);
  }
  if (value.length < minLength)
    throw new ConfigError([{ variable, message: `${file} holds fewer than ${minLength} characters` }]);
  return value;
}

/** A bearer token from a file: as readSecret, and visible ASCII as a token in the environment must be. */
function readToken(variable: string, file: string | undefined): string | undefined {
  const value = readSecret(variable, file);
  if (value !== undefined && !VISIBLE_ASCII.test(value))
    throw new ConfigError([{ variable, message: `${file} must hold ${TOKEN_CHARACTERS}` }]);
  return value;
}

/**
 * DATABASE_URL, with the password of DATABASE_PASSWORD_FILE when that is set: the database's own secret file
 * (compose gives Postgres and the service the same one), so the password is in no environment.
 */
function databaseUrl(url: string | undefined, passwordFile: string | undefined): string | undefined {
  if (!passwordFile) return url;
  const problem = (variable: string, message: string) => new ConfigError([{ variable, message }]);
  if (!url) throw problem('DATABASE_PASSWORD_FILE', 'needs DATABASE_URL, the address without its password');
  let address: URL;
  try {
    address = new URL(url);
  } catch {
    throw problem('DATABASE_URL', 'is not a URL');
  }
  if (address.password)
    throw problem('DATABASE_URL', 'holds a password and DATABASE_PASSWORD_FILE is set: keep one of them');
  // postgres-js reads the password through decodeURIComponent: every character of the file survives.
  address.password = encodeURIComponent(readSecret('DATABASE_PASSWORD_FILE', passwordFile, 1) as string);
  return address.toString();
}

/**
 * Builds the configuration; throws ConfigError naming every bad variable. `role: 'tool'` is a command-line
 * tool's: it changes the rollout but routes no booking, so what only the serving process needs is not required.
 */
export function loadConfig(
  env: Record<string, string | undefined> = process.env,
  overrides: Partial<Record<EnvName, string | number>> = {},
  { role = 'service' }: { role?: 'service' | 'tool' } = {},
): Config {
  const raw: Record<string, unknown> = {};
  for (const key of Object.keys(configSchema.shape)) {
    const value = overrides[key as EnvName] ?? env[key];
    if (value !== undefined && value !== '') raw[key] = value;
  }
  const parsed = configSchema.safeParse(raw);
  if (!parsed.success) {
    throw new ConfigError(
      parsed.error.issues.map((issue) => ({
        variable: String(issue.path[0] ?? '?'),
        message: issue.message,
      })),
    );
  }
  const c = parsed.data;
  if (c.AUTO_PROMOTE === 'true' && !c.PROMETHEUS_URL) {
    throw new ConfigError([{ variable: 'PROMETHEUS_URL', message: 'required when AUTO_PROMOTE=true' }]);
  }
  if (c.METRICS_PORT === c.PORT && c.PORT !== 0) {
    throw new ConfigError([
      { variable: 'METRICS_PORT', message: `equals PORT (${c.PORT}): the API and /metrics need a port each` },
    ]);
  }
  // A rollback written to the FeatureFlag reaches this process only through flagd (the sidecar syncs from
  // it); routing on FLAGS_FILE instead, it would answer rolled_back and go on serving ML.
  if (role === 'service' && c.FLAGS_FEATUREFLAG && !c.FLAGD_HOST) {
    throw new ConfigError([
      {
        variable: 'FLAGS_FEATUREFLAG',
        message:
          'needs FLAGD_HOST (the flagd that serves that FeatureFlag, e.g. the sidecar at localhost): without it this process routes on FLAGS_FILE, which rollbacks to the FeatureFlag never change',
      },
    ]);
  }
  const kubernetesApi =
    c.KUBERNETES_API_URL ??
    (c.KUBERNETES_SERVICE_HOST
      ? `https://${c.KUBERNETES_SERVICE_HOST}:${c.KUBERNETES_SERVICE_PORT}`
      : undefined);
  if (c.FLAGS_FEATUREFLAG && !kubernetesApi) {
    throw new ConfigError([
      {
        variable: 'FLAGS_FEATUREFLAG',
        message:
          'needs the Kubernetes API: inside a pod KUBERNETES_SERVICE_HOST, elsewhere KUBERNETES_API_URL',
      },
    ]);
  }
  const [featureFlagNamespace, featureFlagName] = (c.FLAGS_FEATUREFLAG ?? '/').split('/') as [string, string];
  return {
    port: c.PORT,
    host: c.HOST,
    logLevel: c.LOG_LEVEL,
    flags: c.FLAGD_HOST
      ? { kind: 'flagd', host: c.FLAGD_HOST, port: c.FLAGD_PORT, pollIntervalMs: c.FLAGS_POLL_INTERVAL_MS }
      : { kind: 'file', file: c.FLAGS_FILE, pollIntervalMs: c.FLAGS_POLL_INTERVAL_MS },
    flagsFile: c.FLAGS_FILE,
    rollbackLatchPollMs: c.ROLLBACK_LATCH_POLL_INTERVAL_MS,
    deploymentEnvironment: c.DEPLOYMENT_ENVIRONMENT,
    flagStore:
      c.FLAGS_FEATUREFLAG && kubernetesApi
        ? {
            kind: 'kubernetes',
            namespace: featureFlagNamespace,
            name: featureFlagName,
            apiUrl: kubernetesApi,
            tokenFile: c.KUBERNETES_TOKEN_FILE,
            caFile: c.KUBERNETES_CA_FILE,
          }
        : { kind: 'file', file: c.FLAGS_FILE },
    modelsDir: c.MODELS_DIR,
    mlTimeoutMs: c.ML_TIMEOUT_MS,
    shadowModelVersion: c.SHADOW_MODEL_VERSION,
    prometheusUrl: c.PROMETHEUS_URL,
    autoPromote:
      c.AUTO_PROMOTE === 'true' && c.PROMETHEUS_URL
        ? {
            prometheusUrl: c.PROMETHEUS_URL,
            selector: c.AUTO_PROMOTE_SELECTOR.trim(),
            soakMs: c.AUTO_PROMOTE_SOAK_S * 1000,
            intervalMs: c.AUTO_PROMOTE_INTERVAL_S * 1000,
            minSamples: c.AUTO_PROMOTE_MIN_SAMPLES,
          }
        : null,
    webhookToken:
      c.ALERTMANAGER_WEBHOOK_TOKEN ??
      readToken('ALERTMANAGER_WEBHOOK_TOKEN_FILE', c.ALERTMANAGER_WEBHOOK_TOKEN_FILE),
    feedbackToken: c.FEEDBACK_TOKEN ?? readToken('FEEDBACK_TOKEN_FILE', c.FEEDBACK_TOKEN_FILE),
    predictionsToken: c.PREDICTIONS_TOKEN ?? readToken('PREDICTIONS_TOKEN_FILE', c.PREDICTIONS_TOKEN_FILE),
    reportsToken: c.REPORTS_TOKEN ?? readToken('REPORTS_TOKEN_FILE', c.REPORTS_TOKEN_FILE),
    bookingRefKey: c.BOOKING_REF_KEY ?? readSecret('BOOKING_REF_KEY_FILE', c.BOOKING_REF_KEY_FILE),
    redisUrl: c.REDIS_URL,
    database: {
      url: databaseUrl(c.DATABASE_URL, c.DATABASE_PASSWORD_FILE),
      dataDir: c.DATA_DIR,
      retentionDays: c.RETENTION_DAYS,
    },
    feedbackLiveHorizonMs: c.FEEDBACK_LIVE_HORIZON_HOURS * 3600_000,
    business: { lateThresholdMinutes: c.LATE_THRESHOLD_MINUTES, costPerDelayMinute: c.COST_PER_DELAY_MINUTE },
    reportWebhookUrl: c.REPORT_WEBHOOK_URL,
    weather: {
      apiKey: c.OPENWEATHER_API_KEY,
      baseUrl: c.OPENWEATHER_BASE_URL,
      gridDeg: c.WEATHER_GRID_DEG,
      currentTtlMs: c.WEATHER_CURRENT_TTL_S * 1000,
      forecastTtlMs: c.WEATHER_FORECAST_TTL_S * 1000,
      staleMaxMs: c.WEATHER_STALE_MAX_S * 1000,
      dailyBudget: c.WEATHER_DAILY_BUDGET,
      lookupTimeoutMs: c.WEATHER_TIMEOUT_MS,
      apiTimeoutMs: c.WEATHER_API_TIMEOUT_MS,
      authRetryMs: c.WEATHER_AUTH_RETRY_S * 1000,
    },
    bodyLimitBytes: c.BODY_LIMIT_BYTES,
    batchMaxBookings: c.BATCH_MAX_BOOKINGS,
    metricsPort: c.METRICS_PORT,
    otlpEndpoint: c.OTEL_EXPORTER_OTLP_ENDPOINT,
    traceSampleRatio: c.TRACE_SAMPLE_RATIO,
    shutdownTimeoutMs: c.SHUTDOWN_TIMEOUT_MS,
    requestTimeoutMs: c.REQUEST_TIMEOUT_MS,
  };
}
