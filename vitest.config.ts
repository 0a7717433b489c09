import { defineConfig } from 'vitest/config';

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
    // Process tests start the service (tsx compiles it first) and wait up to 60 s for readiness on a loaded
    // machine, then do their work: a budget above that wait, so a slow start fails as "not ready", not as a timeout.
    testTimeout: 120_000,
    hookTimeout: 120_000,
    // Suites spawn real servers and watch real files: one file at a time keeps ports and timings honest on 2 cores.
    fileParallelism: false,
  },
});
