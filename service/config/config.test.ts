import { describe, expect, it } from 'vitest';
import { DEFAULT_BUSINESS_SETTINGS } from '../domain/business.js';
import { ConfigError, loadConfig } from './config.js';

describe('loadConfig', () => {
  it('runs on embedded defaults with an empty environment', () => {
    const config = loadConfig({});
    expect(config.port).toBe(8080);
    expect(config.flags).toEqual({ kind: 'file', file: 'flagd/flags.json', pollIntervalMs: 1000 });
    expect(config.bodyLimitBytes).toBe(1024 * 1024);
    expect(config.batchMaxBookings).toBe(1000);
    expect(config.metricsPort).toBe(9464);
    expect(config.traceSampleRatio).toBe(1);
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
      loadConfig({ PORT: 'eighty', BODY_LIMIT_BYTES: '-1', LOG_LEVEL: 'loud', TRACE_SAMPLE_RATIO: '1.5' });
    } catch (err) {
      error = err;
    }
    expect(error).toBeInstanceOf(ConfigError);
    const variables = (error as ConfigError).problems.map((p) => p.variable).sort();
    expect(variables).toEqual(['BODY_LIMIT_BYTES', 'LOG_LEVEL', 'PORT', 'TRACE_SAMPLE_RATIO']);
    expect((error as Error).message).toContain('PORT');
  });
});

describe('feedback token', () => {
  it('comes from the variable or from a file, and must be long enough', async () => {
    const { writeFileSync } = await import('node:fs');
    const { join } = await import('node:path');
    const { tempDir } = await import('../test-support/harness.js');
    expect(loadConfig({}).feedbackToken).toBeUndefined();
    const file = join(tempDir(), 'token');
    writeFileSync(file, 'feedback-secret-file-123\n');
    expect(loadConfig({ FEEDBACK_TOKEN_FILE: file }).feedbackToken).toBe('feedback-secret-file-123');
    expect(() => loadConfig({ FEEDBACK_TOKEN: 'short' })).toThrow(/FEEDBACK_TOKEN: at least 16 characters/);
    expect(loadConfig({ PREDICTIONS_TOKEN_FILE: file }).predictionsToken).toBe('feedback-secret-file-123');
    expect(() => loadConfig({ PREDICTIONS_TOKEN: 'short' })).toThrow(
      /PREDICTIONS_TOKEN: at least 16 characters/,
    );
  });
});

describe('reports token and booking ref key', () => {
  it('come from the variable or from a file, and must be long enough', async () => {
    const { writeFileSync } = await import('node:fs');
    const { join } = await import('node:path');
    const { tempDir } = await import('../test-support/harness.js');
    expect(loadConfig({})).toMatchObject({ reportsToken: undefined, bookingRefKey: undefined });
    expect(loadConfig({ REPORTS_TOKEN: 'reports-secret-0123' }).reportsToken).toBe('reports-secret-0123');
    expect(loadConfig({ BOOKING_REF_KEY: 'booking-ref-key-0123' }).bookingRefKey).toBe(
      'booking-ref-key-0123',
    );
    const dir = tempDir();
    const token = join(dir, 'reports-token');
    writeFileSync(token, 'reports-secret-file-123\n');
    expect(loadConfig({ REPORTS_TOKEN_FILE: token }).reportsToken).toBe('reports-secret-file-123');
    const key = join(dir, 'booking-ref-key');
    writeFileSync(key, 'a key with spaces and été, 0123\n');
    // A key is no header: any character, trimmed.
    expect(loadConfig({ BOOKING_REF_KEY_FILE: key }).bookingRefKey).toBe('a key with spaces and été, 0123');
    expect(() => loadConfig({ REPORTS_TOKEN: 'short' })).toThrow(/REPORTS_TOKEN: at least 16 characters/);
    expect(() => loadConfig({ BOOKING_REF_KEY: 'short' })).toThrow(/BOOKING_REF_KEY: at least 16 characters/);
    const short = join(dir, 'short');
    writeFileSync(short, 'short\n');
    expect(() => loadConfig({ REPORTS_TOKEN_FILE: short })).toThrow(
      /REPORTS_TOKEN_FILE: .* holds fewer than 16 characters/,
    );
    expect(() => loadConfig({ BOOKING_REF_KEY_FILE: short })).toThrow(
      /BOOKING_REF_KEY_FILE: .* holds fewer than 16 characters/,
    );
    expect(() => loadConfig({ BOOKING_REF_KEY_FILE: join(dir, 'missing') })).toThrow(
      /BOOKING_REF_KEY_FILE: cannot read .*: ENOENT/,
    );
  });
});

describe('webhook token', () => {
  it('comes from the variable or from a file, and must be long enough', async () => {
    const { writeFileSync } = await import('node:fs');
    const { join } = await import('node:path');
    const { tempDir } = await import('../test-support/harness.js');
    expect(loadConfig({}).webhookToken).toBeUndefined();
    expect(loadConfig({ ALERTMANAGER_WEBHOOK_TOKEN: 'a-token-of-24-characters' }).webhookToken).toBe(
      'a-token-of-24-characters',
    );
    const file = join(tempDir(), 'token');
    writeFileSync(file, 'from-a-secret-file-123\n');
    expect(loadConfig({ ALERTMANAGER_WEBHOOK_TOKEN_FILE: file }).webhookToken).toBe('from-a-secret-file-123');
    expect(() => loadConfig({ ALERTMANAGER_WEBHOOK_TOKEN: 'short' })).toThrow(
      /ALERTMANAGER_WEBHOOK_TOKEN: at least 16 characters/,
    );
    expect(() => loadConfig({ ALERTMANAGER_WEBHOOK_TOKEN_FILE: '/nonexistent/token' })).toThrow(
      /ALERTMANAGER_WEBHOOK_TOKEN_FILE: cannot read/,
    );
  });
});

describe('database password file', () => {
  it('puts the password of the file into DATABASE_URL, as postgres-js reads it back', async () => {
    const { writeFileSync } = await import('node:fs');
    const { join } = await import('node:path');
    const { default: postgres } = await import('postgres');
    const { tempDir } = await import('../test-support/harness.js');
    const file = join(tempDir(), 'postgres_password');
    const password = 'p@ss:w/rd%41 é#?';
    writeFileSync(file, `${password}\n`);
    const url = loadConfig({
      DATABASE_URL: 'postgres://delay@postgres:5432/delay',
      DATABASE_PASSWORD_FILE: file,
    }).database.url;
    const sql = postgres(url as string);
    expect(sql.options).toMatchObject({
      pass: password,
      user: 'delay',
      host: ['postgres'],
      database: 'delay',
    });
    await sql.end();
    expect(loadConfig({ DATABASE_URL: 'postgres://delay:inline@postgres/delay' }).database.url).toBe(
      'postgres://delay:inline@postgres/delay',
    );
  });

  it('refuses a file without DATABASE_URL, a URL holding a password too, and an empty or missing file', async () => {
    const { writeFileSync } = await import('node:fs');
    const { join } = await import('node:path');
    const { tempDir } = await import('../test-support/harness.js');
    const file = join(tempDir(), 'postgres_password');
    writeFileSync(file, 'secret\n');
    expect(() => loadConfig({ DATABASE_PASSWORD_FILE: file })).toThrow(
      /DATABASE_PASSWORD_FILE: needs DATABASE_URL/,
    );
    expect(() =>
      loadConfig({ DATABASE_URL: 'postgres://delay:other@postgres/delay', DATABASE_PASSWORD_FILE: file }),
    ).toThrow(/DATABASE_URL: holds a password/);
    expect(() => loadConfig({ DATABASE_URL: 'not a url', DATABASE_PASSWORD_FILE: file })).toThrow(
      /DATABASE_URL: is not a URL/,
    );
    writeFileSync(file, '\n');
    expect(() =>
      loadConfig({ DATABASE_URL: 'postgres://delay@postgres/delay', DATABASE_PASSWORD_FILE: file }),
    ).toThrow(/DATABASE_PASSWORD_FILE: .* holds fewer than 1 characters/);
    expect(() =>
      loadConfig({
        DATABASE_URL: 'postgres://delay@postgres/delay',
        DATABASE_PASSWORD_FILE: '/nonexistent/pw',
      }),
    ).toThrow(/DATABASE_PASSWORD_FILE: cannot read \/nonexistent\/pw: ENOENT/);
  });
});

describe('automatic promotion', () => {
  it('is off by default and needs a Prometheus when on', () => {
    expect(loadConfig({}).autoPromote).toBeNull();
    expect(() => loadConfig({ AUTO_PROMOTE: 'true' })).toThrow(
      /PROMETHEUS_URL: required when AUTO_PROMOTE=true/,
    );
    expect(
      loadConfig({ AUTO_PROMOTE: 'true', PROMETHEUS_URL: 'http://prometheus:9090' }).autoPromote,
    ).toEqual({
      prometheusUrl: 'http://prometheus:9090',
      selector: 'job="delay-prediction"',
      soakMs: 86_400_000,
      intervalMs: 300_000,
      minSamples: 200,
    });
  });

  it('takes the label matchers of its deployment, and refuses what is not matchers', () => {
    const on = { AUTO_PROMOTE: 'true', PROMETHEUS_URL: 'http://prometheus:9090' };
    expect(
      loadConfig({ ...on, AUTO_PROMOTE_SELECTOR: 'job="delay-prediction", namespace=~"delay|delay-eu"' })
        .autoPromote?.selector,
    ).toBe('job="delay-prediction", namespace=~"delay|delay-eu"');
    for (const bad of ['delay-prediction', 'job=delay-prediction', 'job="a"} or vector(1) {x="'])
      expect(() => loadConfig({ ...on, AUTO_PROMOTE_SELECTOR: bad }), bad).toThrow(/AUTO_PROMOTE_SELECTOR/);
  });
});

describe('the FeatureFlag store', () => {
  const onKubernetes = {
    FLAGS_FEATUREFLAG: 'delay/delay-prediction',
    KUBERNETES_API_URL: 'https://kubernetes.default.svc',
  };

  it('is refused to the service without FLAGD_HOST, which would route on a file no rollback changes', () => {
    expect(() => loadConfig(onKubernetes)).toThrow(ConfigError);
    expect(() => loadConfig(onKubernetes)).toThrow(/FLAGS_FEATUREFLAG: needs FLAGD_HOST/);
    const config = loadConfig({ ...onKubernetes, FLAGD_HOST: 'localhost' });
    expect(config.flags).toMatchObject({ kind: 'flagd', host: 'localhost' });
    expect(config.flagStore).toMatchObject({
      kind: 'kubernetes',
      namespace: 'delay',
      name: 'delay-prediction',
    });
  });

  it('is taken by a command-line tool without FLAGD_HOST: a tool writes the FeatureFlag and routes nothing', () => {
    expect(loadConfig(onKubernetes, {}, { role: 'tool' }).flagStore.kind).toBe('kubernetes');
  });
});

describe('ports', () => {
  it('refuses METRICS_PORT equal to PORT, naming both', () => {
    expect(() => loadConfig({ PORT: '9000', METRICS_PORT: '9000' })).toThrow(
      /METRICS_PORT: equals PORT \(9000\)/,
    );
    expect(() => loadConfig({ METRICS_PORT: '8080' })).toThrow(/METRICS_PORT: equals PORT \(8080\)/);
    // 0 asks the system for a free port: two of them are two ports.
    expect(loadConfig({ PORT: '0', METRICS_PORT: '0' }).metricsPort).toBe(0);
  });
});

describe('token characters', () => {
  const variables = [
    'ALERTMANAGER_WEBHOOK_TOKEN',
    'FEEDBACK_TOKEN',
    'PREDICTIONS_TOKEN',
    'REPORTS_TOKEN',
  ] as const;

  it('refuses a token a request header could never carry, naming the variable', () => {
    for (const variable of variables) {
      for (const bad of ['pässwörd-0123456789', 'a token with spaces', 'tab\tinside-0123456789'])
        expect(() => loadConfig({ [variable]: bad }), `${variable}=${bad}`).toThrow(
          new RegExp(`${variable}: must hold visible ASCII characters only`),
        );
      const b64token = 'mF_9.B5f-4.1JqM+/aZ~0==';
      expect(loadConfig({ [variable]: b64token })).toBeDefined();
    }
  });

  it('refuses the same in a token file, naming the _FILE variable', async () => {
    const { writeFileSync } = await import('node:fs');
    const { join } = await import('node:path');
    const { tempDir } = await import('../test-support/harness.js');
    const file = join(tempDir(), 'token');
    writeFileSync(file, 'jeton-secret-été-0123456789\n');
    for (const variable of variables)
      expect(() => loadConfig({ [`${variable}_FILE`]: file })).toThrow(
        new RegExp(`${variable}_FILE: ${file} must hold visible ASCII characters only`),
      );
  });
});

describe('the business settings', () => {
  it('default to late from 10 minutes and no price, and refuse what is no threshold or price', () => {
    expect(loadConfig({}).business).toEqual(DEFAULT_BUSINESS_SETTINGS);
    expect(loadConfig({ LATE_THRESHOLD_MINUTES: '7.5', COST_PER_DELAY_MINUTE: '0.8' }).business).toEqual({
      lateThresholdMinutes: 7.5,
      costPerDelayMinute: 0.8,
    });
    for (const [variable, value] of [
      ['LATE_THRESHOLD_MINUTES', '0'],
      ['LATE_THRESHOLD_MINUTES', 'ten'],
      ['LATE_THRESHOLD_MINUTES', '2000'],
      ['COST_PER_DELAY_MINUTE', '-1'],
      ['COST_PER_DELAY_MINUTE', '1,5'],
    ] as const)
      expect(() => loadConfig({ [variable]: value }), `${variable}=${value}`).toThrow(variable);
  });
});
