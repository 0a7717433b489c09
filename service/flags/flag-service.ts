import { randomUUID } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, statSync, unwatchFile, watchFile } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join, resolve } from 'node:path';
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
import type { ServiceMetrics } from '../telemetry/service-metrics.js';
import {
  FLAG_KEYS,
  FlagConfigError,
  HEURISTIC_VARIANT,
  parseFlagConfig,
  type RolloutState,
} from './flag-config.js';
import { replaceFile } from './flag-writer.js';

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
}

export interface VariantAssignment {
  variant: string;
  /** Set when the flag could not be evaluated and the heuristic was used by default. */
  error?: string;
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

/** A flag document is a few kilobytes; parsing a huge one would hold the event loop (50 MB: 0.4 s). */
export const MAX_FLAG_FILE_BYTES = 1024 * 1024;

function readFlagFile(file: string): string {
  const { size } = statSync(file);
  if (size > MAX_FLAG_FILE_BYTES)
    throw new Error(`${size} bytes, over the ${MAX_FLAG_FILE_BYTES}-byte limit of a flag file`);
  return readFileSync(file, 'utf8');
}

export class FlagFileError extends Error {
  constructor(
    readonly file: string,
    reason: string,
  ) {
    super(`flag file ${file}: ${reason}`);
    this.name = 'FlagFileError';
  }
}

interface Options {
  flags: Config['flags'];
  logger: Logger;
  metrics: ServiceMetrics;
}

/**
 * Flags through OpenFeature and the flagd provider's in-process resolver. In file mode the service also
 * validates the file itself (strict flagd schema plus this service's rules) on every change, so it can
 * report the rollout it serves and count refused files; the provider keeps the last configuration it
 * could parse.
 */
export async function startFlagService({ flags, logger, metrics }: Options): Promise<FlagService> {
  const log = logger.child({ component: 'flags' });
  const domain = `delay-service-${randomUUID()}`;
  let rollout: RolloutState | null = null;
  let lastChangedAt: Date | null = null;
  let lastError: { at: Date; message: string } | null = null;
  let lastText: string | null = null;
  let acceptedText: string | null = null;
  const sourceKind = flags.kind;
  const listeners: (() => void)[] = [];

  const refuse = (message: string) => {
    lastError = { at: new Date(), message };
    metrics.flagConfigErrors.add(1, { source: sourceKind });
    log.error({ err: message }, 'flag configuration refused; the last good configuration stays in force');
  };

  let routeHere: (text: string, reason: string) => boolean = () => false;
  let stopWatching = () => {};
  let removeCopy = () => {};
  // In file mode the provider reads a copy holding only the files this service accepted: reading the file
  // itself, it would apply a file flagd's schema refuses (it parses without strict validation).
  let providerFile: string | undefined;
  if (flags.kind === 'file') {
    const file = resolve(flags.file);
    let text: string;
    try {
      text = readFlagFile(file);
      rollout = parseFlagConfig(text);
    } catch (err) {
      throw new FlagFileError(file, (err as Error).message);
    }
    const copyDir = mkdtempSync(join(tmpdir(), 'delay-flags-accepted-'));
    const copy = join(copyDir, basename(file));
    providerFile = copy;
    removeCopy = () => rmSync(copyDir, { recursive: true, force: true });
    const publish = (accepted: string) => {
      replaceFile(copy, accepted);
      acceptedText = accepted;
    };
    publish(text);
    lastText = text;
    lastChangedAt = new Date();
    routeHere = (text, reason) => {
      const routed = parseFlagConfig(text);
      publish(text);
      rollout = routed;
      // The file, once readable and valid again, is the source of truth: even its old content is applied.
      lastText = null;
      lastChangedAt = new Date();
      lastError = {
        at: new Date(),
        message: `this process routes on a change the flag file could not hold (${reason}); other readers of ${file} do not see it`,
      };
      log.error(
        { err: reason, ml_percentage: routed.mlPercentage },
        'flag file not writable: this process alone routes on the change',
      );
      return true;
    };
    const onChange = () => {
      let next: string;
      try {
        next = readFlagFile(file);
      } catch (err) {
        refuse(`cannot read ${file}: ${(err as Error).message}`);
        return;
      }
      if (next === lastText) {
        // The file is back as it was accepted (after a failed read): nothing to apply, nothing wrong any more.
        if (next === acceptedText) lastError = null;
        return;
      }
      try {
        const accepted = parseFlagConfig(next);
        publish(next);
        rollout = accepted;
        lastText = next;
        lastChangedAt = new Date();
        lastError = null;
        log.info(
          { ml_percentage: rollout.mlPercentage, models: rollout.activeModelVersions },
          'flag file changed',
        );
      } catch (err) {
        // A refused file is refused once; a failed write of the accepted copy is tried again next poll.
        if (err instanceof FlagConfigError) lastText = next;
        refuse(`${file}: ${err instanceof FlagConfigError ? err.message : `cannot apply: ${String(err)}`}`);
      }
    };
    // A change goes through two polls, the file's then the copy's: half the interval each keeps it applied
    // within FLAGS_POLL_INTERVAL_MS. The copy's is registered before the provider's own watcher: Node shares
    // one stat poller per file, so this interval also paces the provider's reloads.
    const interval = Math.max(1, Math.floor(flags.pollIntervalMs / 2));
    const pace = () => {};
    watchFile(file, { interval, persistent: false }, onChange);
    watchFile(copy, { interval, persistent: false }, pace);
    stopWatching = () => {
      unwatchFile(file, onChange);
      unwatchFile(copy, pace);
    };
  }

  const providerLogger = log.child({ component: 'flagd-provider' });
  const provider = new FlagdProvider(
    flags.kind === 'file'
      ? { resolverType: 'in-process', offlineFlagSourcePath: providerFile as string }
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
      lastChangedAt = new Date();
      log.info({ flags_changed: details?.flagsChanged }, 'flag configuration changed on flagd');
    });
    client.addHandler(ProviderEvents.Error, (details) => {
      refuse(`flagd sync error: ${details?.message ?? 'unknown'}`);
    });
  }
  try {
    await OpenFeature.setProviderAndWait(domain, provider);
  } catch (err) {
    stopWatching();
    removeCopy();
    const where = flags.kind === 'file' ? resolve(flags.file) : `flagd at ${flags.host}:${flags.port}`;
    throw new FlagFileError(where, `flag provider did not start: ${(err as Error).message}`);
  }
  if (flags.kind === 'flagd') lastChangedAt = new Date();

  const evaluationError = (flag: string, message: string | undefined) => {
    metrics.flagEvaluationErrors.add(1, { flag });
    log.warn({ flag, err: message }, 'flag evaluation failed; using the coded default');
  };

  const booleanFlag = async (key: string, fallback: boolean) => {
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
      const details = await client.getStringDetails(FLAG_KEYS.model, HEURISTIC_VARIANT, {
        ...context,
        targetingKey: bookingId,
      });
      if (details.errorCode) {
        const message = `${details.errorCode}: ${details.errorMessage ?? ''}`.trim();
        evaluationError(FLAG_KEYS.model, message);
        return { variant: HEURISTIC_VARIANT, error: message };
      }
      return { variant: details.value };
    },

    acceptedText: () => acceptedText,
    routeHere: (text, reason) => routeHere(text, reason),
    fallbackOnError: () => switches.fallbackOnError,
    weatherEnrichment: () => switches.weatherEnrichment,

    status(): FlagStatus {
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
      stopWatching();
      await provider.onClose();
      removeCopy();
      OpenFeature.setProvider(domain, NOOP_PROVIDER);
    },
  };
}
