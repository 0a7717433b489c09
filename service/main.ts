import { type Config, ConfigError, loadConfig } from './config/config.js';
import { listenFailure } from './http/listen.js';

// Only the config is imported here: a bad variable is answered before anything heavy loads. The telemetry
// comes next, and the OpenTelemetry SDK must start before the modules it instruments (http, ioredis) are
// loaded, so the server comes in by a dynamic import after it.
let config: Config;
try {
  config = loadConfig();
} catch (err) {
  if (!(err instanceof ConfigError)) throw err;
  process.stderr.write(`delay-prediction: ${err.message}\n`);
  process.exit(1);
}
const { startTelemetry } = await import('./telemetry/otel.js');
// The metrics server listens first: a port in use or a HOST that does not resolve is named here, in one line.
const telemetry = await startTelemetry({
  metricsPort: config.metricsPort,
  host: config.host,
  otlpEndpoint: config.otlpEndpoint,
  traceSampleRatio: config.traceSampleRatio,
  deploymentEnvironment: config.deploymentEnvironment,
}).catch((err: unknown) => {
  const message = listenFailure(err, {
    portVariable: 'METRICS_PORT',
    port: config.metricsPort,
    host: config.host,
  });
  if (!message) throw err;
  process.stderr.write(`delay-prediction: ${message}\n`);
  process.exit(1);
});
const { runServer } = await import('./server.js');
await runServer(config, telemetry);
