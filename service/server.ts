import type { Server } from 'node:http';
import { serve } from '@hono/node-server';
import { ComposeError, composeService } from './compose.js';
import type { Config } from './config/config.js';
import { FlagFileError } from './flags/flag-service.js';
import { listenFailure } from './http/listen.js';
import type { Telemetry } from './telemetry/otel.js';

function fail(message: string): never {
  process.stderr.write(`delay-prediction: ${message}\n`);
  process.exit(1);
}

/** Everything after telemetry: imported by main.ts once the NodeSDK patches what it instruments. */
export async function runServer(config: Config, telemetry: Telemetry) {
  let service: Awaited<ReturnType<typeof composeService>>;
  try {
    service = await composeService(config, { telemetry });
  } catch (err) {
    if (err instanceof FlagFileError || err instanceof ComposeError) fail(err.message);
    throw err;
  }
  const { app, logger } = service;

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
  server.once('error', (err) => {
    const message = listenFailure(err, { portVariable: 'PORT', port: config.port, host: config.host });
    if (!message) throw err;
    fail(message);
  });

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
    await service.close(Math.max(config.shutdownTimeoutMs - 1000, 500));
    await telemetry.shutdown();
    logger.info('stopped');
    process.exit(0);
  }
  process.on('SIGTERM', () => void shutdown('SIGTERM'));
  process.on('SIGINT', () => void shutdown('SIGINT'));
}
