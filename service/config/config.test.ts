import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from './config.js';

describe('loadConfig', () => {
  it('runs on embedded defaults with an empty environment', () => {
    const config = loadConfig({});
    expect(config.port).toBe(8080);
    expect(config.flags).toEqual({ kind: 'file', file: 'flagd/flags.json', pollIntervalMs: 1000 });
    expect(config.bodyLimitBytes).toBe(1024 * 1024);
    expect(config.batchMaxBookings).toBe(1000);
    expect(config.metricsPort).toBe(9464);
  });

  it('reads the environment, and explicit options win over it', () => {
    const env = { PORT: '9000', FLAGS_FILE: '/etc/flags.json' };
    expect(loadConfig(env).port).toBe(9000);
    expect(loadConfig(env, { PORT: 9100 }).port).toBe(9100);
    expect(loadConfig(env).flags).toMatchObject({ kind: 'file', file: '/etc/flags.json' });
  });

  it('switches to a flagd server when FLAGD_HOST is set', () => {
    expect(loadConfig({ FLAGD_HOST: 'flagd', FLAGD_PORT: '8016' }).flags).toEqual({
      kind: 'flagd',
      host: 'flagd',
      port: 8016,
      pollIntervalMs: 1000,
    });
    expect(loadConfig({ FLAGD_HOST: '  ' }).flags.kind).toBe('file');
  });

  it('names every bad variable', () => {
    let error: unknown;
    try {
      loadConfig({ PORT: 'eighty', BODY_LIMIT_BYTES: '-1', LOG_LEVEL: 'loud' });
    } catch (err) {
      error = err;
    }
    expect(error).toBeInstanceOf(ConfigError);
    const variables = (error as ConfigError).problems.map((p) => p.variable).sort();
    expect(variables).toEqual(['BODY_LIMIT_BYTES', 'LOG_LEVEL', 'PORT']);
    expect((error as Error).message).toContain('PORT');
  });
});
