import { randomUUID } from 'node:crypto';
import { resolve } from 'node:path';
import { FlagdProvider } from '@openfeature/flagd-provider';
import {
  type Client,
  NOOP_PROVIDER,
  OpenFeature,
  ProviderEvents,
  ServerProviderStatus,
} from '@openfeature/server-sdk';
import type { Logger } from 'pino';
import type { Config } from '../config/config.js';
import { FLAG_KEYS, HEURISTIC_VARIANT } from '../domain/flags.js';
import { type BookingRef, bookingRefs, randomBookingRefKey } from '../privacy/booking-ref.js';
import type { FlagKey, ServiceMetrics } from '../telemetry/service-metrics.js';
import { evaluationSpanEvents } from './evaluation-span-events.js';
import { parseFlagConfig, type RolloutState } from './flag-config.js';
import { watchFlagdConfiguration } from './flagd-sync.js';
import { FlagFileError, startValidatedFileSource } from './validated-file-source.js';

export { MAX_FLAG_FILE_BYTES } from './flag-file.js';
export { FlagFileError } from './validated-file-source.js';

export interface FlagStatus {
  source: { kind: 'file'; file: string } | { kind: 'flagd'; host: string; port: number };
  provider_status: string;
  ml_enabled: boolean | null;
  ml_percentage: number | null;
  model_versions: string[];
  /** Every model variant the flag declares, serving traffic or not (null when the source does not tell). */
  model_variants: string[] | null;
  split: { variant: string; weight: number }[] | null;
  last_changed_at: string | null;
  last_error: { at: string; message: string } | null;
  /** The rollback latch beside the flag (service/rollout/rollback-latch.ts), where the service keeps one. */
  rollback_latch?: RollbackLatchStatus;
}

/** While `held`, no booking goes to ML whatever the flag's split says; only a person's `rollout enable` lifts it. */
export interface RollbackLatchStatus {
  held: boolean;
  /** shared: read from flag_changes by every replica (Postgres); process: this process only, lost on restart. */
  scope: 'shared' | 'process';
  since: string | null;
  actor: string | null;
  alert: string | null;
  reason: string | null;
  /** What the flag asks for while the latch holds it back; null when it asks for no ML. */
  refused: { ml_percentage: number | null; split: { variant: string; weight: number }[] | null } | null;
  /** The last read of the latch (shared), or of this process's state. */
  checked_at: string | null;
  last_error: { at: string; message: string } | null;
}

export interface VariantAssignment {
  variant: string;
  /** Set when the flag could not be evaluated and the heuristic was used by default. */
  error?: string;
  /** Set when the flag named a model and the rollback latch held the booking on the heuristic. */
  latched?: boolean;
}

/** What the prediction path needs from flags. Implementations never throw from evaluations. */
export interface FlagService {
  ready(): boolean;
  modelVariant(bookingId: string, context?: Record<string, string>): Promise<VariantAssignment>;
  /** Global switches: evaluated when the configuration changes, read without cost on the hot path. */
  fallbackOnError(): boolean;
  weatherEnrichment(): boolean;
  status(): FlagStatus;
  /** File mode: the text of the last flag file this service accepted (what it routes on); null with flagd. */
  acceptedText(): string | null;
  /**
   * File mode: routes this process on `text` (validated) when a rollback could not be written to the flag
   * file; the next valid file read replaces it. False with flagd, whose configuration is flagd's.
   */
  routeHere(text: string, reason: string): boolean;
  /** Called after the flag configuration changed (file reloaded or flagd pushed a change). */
  onChange(listener: () => void): void;
  close(): Promise<void>;
}

interface Options {
  flags: Config['flags'];
  logger: Logger;
  metrics: ServiceMetrics;
  /**
   * The pseudonym a traced evaluation's `feature_flag.context.id` carries in place of the booking id; by default
   * a key of this service's own, as in a process without BOOKING_REF_KEY.
   */
  bookingRef?: BookingRef;
}

/**
 * Flags through OpenFeature and the flagd provider's in-process resolver. In file mode the provider reads
 * the copy a validated file source keeps, so the service can report the rollout it serves and count refused
 * files; the provider keeps the last configuration it could parse.
 */
export async function startFlagService({
  flags,
  logger,
  metrics,
  bookingRef = bookingRefs(randomBookingRefKey()),
}: Options): Promise<FlagService> {
  const log = logger.child({ component: 'flags' });
  const traced = evaluationSpanEvents(bookingRef);
  const domain = `delay-service-${randomUUID()}`;
  const listeners: (() => void)[] = [];
  const countRefusal = (message: string) => {
    metrics.flagConfigErrors.add(1, { source: flags.kind });
    log.error({ err: message }, 'flag configuration refused; the last good configuration stays in force');
  };
  // With flagd, the configuration is flagd's: the provider evaluates it, and a second sync stream of the
  // same protocol gives the status (split, model variants, the rollout gauge) what flagd serves.
  let flagdChangedAt: Date | null = null;
  let flagdError: { at: Date; message: string } | null = null;
  let flagdRollout: RolloutState | null = null;
  let flagdText: string | null = null;
  const flagdWatch =
    flags.kind === 'flagd'
      ? watchFlagdConfiguration({
          host: flags.host,
          port: flags.port,
          logger: log,
          onConfiguration: (text) => {
            if (text === flagdText) return;
            flagdText = text;
            try {
              flagdRollout = parseFlagConfig(text);
              flagdChangedAt = new Date();
              flagdError = null;
              log.info(
                { ml_percentage: flagdRollout.mlPercentage, models: flagdRollout.activeModelVersions },
                'flag configuration from flagd',
              );
              for (const listener of listeners) listener();
            } catch (err) {
              // The provider routes on what flagd serves, refused here or not: the share is no longer known.
              if (flagdRollout) flagdRollout = { ...flagdRollout, mlPercentage: null, split: null };
              flagdError = {
                at: new Date(),
                message: `flagd serves a configuration this service refuses: ${(err as Error).message}`,
              };
              countRefusal(flagdError.message);
            }
          },
          onError: (message) => {
            flagdError = { at: new Date(), message };
          },
        })
      : null;

  const source =
    flags.kind === 'file'
      ? await startValidatedFileSource({
          file: flags.file,
          pollIntervalMs: flags.pollIntervalMs,
          logger: log,
          onRefused: countRefusal,
        })
      : null;

  const providerLogger = log.child({ component: 'flagd-provider' });
  const provider = new FlagdProvider(
    flags.kind === 'file'
      ? { resolverType: 'in-process', offlineFlagSourcePath: source?.copy }
      : { resolverType: 'in-process', host: flags.host, port: flags.port },
    {
      error: (...args: unknown[]) => providerLogger.error(args.map(String).join(' ')),
      warn: (...args: unknown[]) => providerLogger.warn(args.map(String).join(' ')),
      info: (...args: unknown[]) => providerLogger.info(args.map(String).join(' ')),
      debug: (...args: unknown[]) => providerLogger.debug(args.map(String).join(' ')),
    },
  );
  const client: Client = OpenFeature.getClient(domain);
  if (flags.kind === 'flagd') {
    client.addHandler(ProviderEvents.ConfigurationChanged, (details) => {
      flagdChangedAt = new Date();
      log.info({ flags_changed: details?.flagsChanged }, 'flag configuration changed on flagd');
    });
    client.addHandler(ProviderEvents.Error, (details) => {
      const message = `flagd sync error: ${details?.message ?? 'unknown'}`;
      flagdError = { at: new Date(), message };
      countRefusal(message);
    });
  }
  try {
    await OpenFeature.setProviderAndWait(domain, provider);
  } catch (err) {
    source?.stopWatching();
    source?.removeCopy();
    flagdWatch?.close();
    const where = flags.kind === 'file' ? resolve(flags.file) : `flagd at ${flags.host}:${flags.port}`;
    throw new FlagFileError(where, `flag provider did not start: ${(err as Error).message}`);
  }
  await flagdWatch?.first;

  const evaluationError = (flag: FlagKey, message: string | undefined) => {
    metrics.flagEvaluationErrors.add(1, { flag });
    log.warn({ flag, err: message }, 'flag evaluation failed; using the coded default');
  };

  const booleanFlag = async (key: FlagKey, fallback: boolean) => {
    const details = await client.getBooleanDetails(key, fallback);
    if (details.errorCode) evaluationError(key, details.errorMessage);
    return details.value;
  };
  // Coded defaults, used only if an evaluation fails: fallback on, because an outage of the flag source must
  // not turn ML errors into failed predictions; weather off, because it spends a paid API budget.
  const switches = { fallbackOnError: true, weatherEnrichment: false };
  let closed = false;
  const refreshSwitches = async () => {
    if (closed) return;
    switches.fallbackOnError = await booleanFlag(FLAG_KEYS.fallbackOnError, true);
    switches.weatherEnrichment = await booleanFlag(FLAG_KEYS.weatherEnrichment, false);
  };
  await refreshSwitches();
  client.addHandler(ProviderEvents.ConfigurationChanged, () => {
    void refreshSwitches();
    for (const listener of listeners) listener();
  });
  client.addHandler(ProviderEvents.Ready, () => void refreshSwitches());

  return {
    ready: () =>
      client.providerStatus === ServerProviderStatus.READY ||
      client.providerStatus === ServerProviderStatus.STALE,

    async modelVariant(bookingId, context = {}) {
      // The evaluation's span event, in a recorded trace only (not a hook of the client or of the API, which
      // is one per process and shared by every flag service in it).
      const details = await client.getStringDetails(
        FLAG_KEYS.model,
        HEURISTIC_VARIANT,
        { ...context, targetingKey: bookingId },
        traced.options(),
      );
      if (details.errorCode) {
        const message = `${details.errorCode}: ${details.errorMessage ?? ''}`.trim();
        evaluationError(FLAG_KEYS.model, message);
        return { variant: HEURISTIC_VARIANT, error: message };
      }
      return { variant: details.value };
    },

    acceptedText: () => source?.acceptedText() ?? null,
    routeHere: (text, reason) => source?.routeHere(text, reason) ?? false,
    fallbackOnError: () => switches.fallbackOnError,
    weatherEnrichment: () => switches.weatherEnrichment,

    status(): FlagStatus {
      const rollout = source?.rollout() ?? flagdRollout;
      const lastChangedAt = source ? source.lastChangedAt() : flagdChangedAt;
      const lastError = source ? source.lastError() : flagdError;
      return {
        source:
          flags.kind === 'file'
            ? { kind: 'file', file: resolve(flags.file) }
            : { kind: 'flagd', host: flags.host, port: flags.port },
        provider_status: client.providerStatus,
        ml_enabled: rollout ? (rollout.mlPercentage === null ? null : rollout.mlPercentage > 0) : null,
        ml_percentage: rollout?.mlPercentage ?? null,
        model_versions: rollout?.activeModelVersions ?? [],
        model_variants: rollout?.modelVariants ?? null,
        split: rollout?.split ?? null,
        last_changed_at: lastChangedAt?.toISOString() ?? null,
        last_error: lastError ? { at: lastError.at.toISOString(), message: lastError.message } : null,
      };
    },

    onChange(listener) {
      listeners.push(listener);
    },

    async close() {
      closed = true;
      source?.stopWatching();
      flagdWatch?.close();
      await provider.onClose();
      source?.removeCopy();
      OpenFeature.setProvider(domain, NOOP_PROVIDER);
    },
  };
}
