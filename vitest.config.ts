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
    testTimeout: 30_000,
    hookTimeout: 30_000,
    // Suites spawn real servers and watch real files: one file at a time keeps ports and timings honest on 2 cores.
    fileParallelism: false,
  },
});
