import { defineConfig } from 'vitest/config';

/** The long suites (`*.e2e.test.ts`): real processes over minutes, run by `npm run test:e2e` (vitest.e2e.config.ts). */
export const E2E_FILES = '**/*.e2e.test.ts';

export default defineConfig({
  test: {
    include: [
      'service/**/*.test.ts',
      'models/**/*.test.ts',
      'prometheus/**/*.test.ts',
      'alertmanager/**/*.test.ts',
      'grafana/**/*.test.ts',
      'deploy/**/*.test.ts',
      '*.test.ts',
    ],
    // npm test stays under 15 minutes on two cores; .ci/run runs the long suites after it.
    exclude: ['**/node_modules/**', E2E_FILES],
    // Process tests start the service (tsx compiles it first) and wait up to 60 s for readiness on a loaded
    // machine, then do their work: a budget above that wait, so a slow start fails as "not ready", not as a timeout.
    testTimeout: 120_000,
    hookTimeout: 120_000,
    // Two files at a time on the 2 cores: process suites spend most of their time waiting on timers, scrapes
    // and child processes. Each file has its own ports (freePort), databases (freshPostgres), Redis key prefix
    // and temporary folders, so two files never share a resource.
    maxWorkers: 2,
    minWorkers: 1,
  },
});
