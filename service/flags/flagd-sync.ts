import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';
import type { Logger } from 'pino';

interface SyncFlagsResponse {
  flag_configuration: string;
}

/** flagd's FlagSyncService, from the part of its published protocol in flagd-sync.proto. */
export function flagSyncService() {
  const definition = loadSync(fileURLToPath(new URL('./flagd-sync.proto', import.meta.url)), {
    keepCase: true,
    defaults: true,
  });
  const loaded = grpc.loadPackageDefinition(definition) as unknown as {
    flagd: { sync: { v1: { FlagSyncService: grpc.ServiceClientConstructor } } };
  };
  return loaded.flagd.sync.v1.FlagSyncService;
}

export interface FlagdConfigurationWatch {
  /** Resolves at the first configuration received, or after `firstWithinMs` without one. */
  first: Promise<void>;
  close(): void;
}

/**
 * The configuration flagd serves, as the flagd provider syncs it: one SyncFlags stream, whole configurations
 * pushed on every change, reopened after 1 s when it ends or fails. The provider keeps its own stream and
 * evaluates; this one lets the service report the rollout flagd serves (status, split, the rollout gauge).
 */
export function watchFlagdConfiguration({
  host,
  port,
  logger,
  onConfiguration,
  onError,
  firstWithinMs = 5000,
}: {
  host: string;
  port: number;
  logger: Logger;
  onConfiguration: (text: string) => void;
  onError: (message: string) => void;
  firstWithinMs?: number;
}): FlagdConfigurationWatch {
  const Service = flagSyncService();
  const client = new Service(`${host}:${port}`, grpc.credentials.createInsecure());
  let closed = false;
  let stream: grpc.ClientReadableStream<SyncFlagsResponse> | undefined;
  let resolveFirst: () => void = () => {};
  const first = new Promise<void>((resolve) => {
    resolveFirst = resolve;
    setTimeout(resolve, firstWithinMs).unref();
  });
  const open = () => {
    if (closed) return;
    const call = (client.SyncFlags as (r: object) => grpc.ClientReadableStream<SyncFlagsResponse>).call(
      client,
      { provider_id: 'delay-prediction-status' },
    );
    stream = call;
    call.on('data', (message: SyncFlagsResponse) => {
      onConfiguration(message.flag_configuration);
      resolveFirst();
    });
    let reopened = false;
    const reopen = (why: string) => {
      if (closed || reopened) return;
      reopened = true;
      logger.debug({ err: why }, 'flagd status stream ended; reopening in 1 s');
      setTimeout(open, 1000).unref();
    };
    call.on('error', (err: Error) => {
      if (!closed) onError(`flagd status stream: ${err.message}`);
      reopen(err.message);
    });
    call.on('end', () => reopen('end'));
  };
  open();
  return {
    first,
    close() {
      closed = true;
      stream?.cancel();
      client.close();
    },
  };
}
