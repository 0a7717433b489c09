import { defineConfig } from 'vitest/config';
import base, { E2E_FILES } from './vitest.config.js';

/** `npm run test:e2e`: only the long suites, with the same budgets and two files at a time. */
export default defineConfig({
  test: { ...base.test, include: [E2E_FILES], exclude: ['**/node_modules/**'] },
});
