import { type Config, ConfigError, loadConfig } from './config/config.js';
import { startTelemetry } from './telemetry/otel.js';

// Only the config and the telemetry are imported here: the OpenTelemetry SDK must start before the modules
// it instruments (http, ioredis) are loaded, so the server comes in by a dynamic import after it.
let config: Config;
try {
  config = loadConfig();
} catch (err) {
  if (!(err instanceof ConfigError)) throw err;
  process.stderr.write(`delay-prediction: ${err.message}\n`);
  process.exit(1);
}
const telemetry = await startTelemetry({
  metricsPort: config.metricsPort,
  host: config.host,
  otlpEndpoint: config.otlpEndpoint,
  traceSampleRatio: config.traceSampleRatio,
  deploymentEnvironment: config.deploymentEnvironment,
});
const { runServer } = await import('./server.js');
await runServer(config, telemetry);
