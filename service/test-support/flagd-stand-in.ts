import { readFileSync, unwatchFile, watchFile } from 'node:fs';
import * as grpc from '@grpc/grpc-js';
import { flagSyncService } from '../flags/flagd-sync.js';

/**
 * A stand-in for flagd, which cannot be installed on these machines: it serves one flag file over flagd's
 * published sync protocol (flagd.sync.v1 SyncFlags, service/flags/flagd-sync.proto), the whole file to every
 * stream at its start and again on every change, as `flagd start --uri file:...` does. Like flagd it pushes
 * only a file that parses as JSON.
 */
export async function startFlagdStandIn(file: string, { pollMs = 100 }: { pollMs?: number } = {}) {
  const server = new grpc.Server();
  const streams = new Set<grpc.ServerWritableStream<unknown, { flag_configuration: string }>>();
  let text = readFileSync(file, 'utf8');
  server.addService(flagSyncService().service, {
    SyncFlags(call: grpc.ServerWritableStream<unknown, { flag_configuration: string }>) {
      streams.add(call);
      call.write({ flag_configuration: text });
      call.on('cancelled', () => streams.delete(call));
      call.on('close', () => streams.delete(call));
    },
  });
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, bound) =>
      err ? reject(err) : resolve(bound),
    ),
  );
  const onChange = () => {
    let next: string;
    try {
      next = readFileSync(file, 'utf8');
      JSON.parse(next);
    } catch {
      return;
    }
    if (next === text) return;
    text = next;
    for (const stream of streams) stream.write({ flag_configuration: text });
  };
  watchFile(file, { interval: pollMs, persistent: false }, onChange);
  return {
    host: '127.0.0.1',
    port,
    /** Streams open now: the providers and status readers of the services syncing from it. */
    streams: () => streams.size,
    close: () =>
      new Promise<void>((resolve) => {
        unwatchFile(file, onChange);
        for (const stream of streams) stream.end();
        server.tryShutdown(() => resolve());
      }),
  };
}
