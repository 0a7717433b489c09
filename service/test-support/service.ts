import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { trace } from '@opentelemetry/api';
import { type ComposeOptions, composeService } from '../compose.js';
import { type EnvName, loadConfig } from '../config/config.js';
import { type FlagsSpec, flagsFile, silentLogger, tempDir, testMeter } from './harness.js';

export interface TestServiceOptions extends Pick<ComposeOptions, 'loadModel' | 'weather'> {
  flags?: FlagsSpec;
  /** Settings as the environment would give them; DATABASE_URL for Postgres, else PGlite in a temp folder. */
  env?: Partial<Record<EnvName, string | number>>;
}

/**
 * The whole service as the server builds it (service/compose.ts), in-process: a flag file of `flags` polled
 * every 50 ms, PGlite in a temp folder unless `env.DATABASE_URL`, a silent logger, metrics read back with
 * `metricValue`, the prediction log writing every 10 ms.
 */
export async function testService({ flags, env = {}, ...standIns }: TestServiceOptions = {}) {
  const dir = tempDir('delay-service-');
  const file = flagsFile(flags, dir);
  const config = loadConfig(
    {},
    { FLAGS_FILE: file, FLAGS_POLL_INTERVAL_MS: 50, DATA_DIR: join(dir, 'data'), ...env },
  );
  const { meter, value } = testMeter();
  const service = await composeService(config, {
    telemetry: { meter, tracer: trace.getTracer('test') },
    logger: silentLogger,
    predictionLogFlushMs: 10,
    ...standIns,
  });
  return {
    ...service,
    file,
    metricValue: value,
    async close() {
      await service.close(2000);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
