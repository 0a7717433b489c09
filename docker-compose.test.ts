import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, utimesSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parse, stringify } from 'yaml';
import { loadConfig } from './service/config/config.js';
import { tempDir } from './service/test-support/harness.js';
import { monitoringBinaries } from './service/test-support/monitoring.js';
import { startArguments } from './service/test-support/process.js';
import { runChild } from './service/test-support/run-child.js';

/* docker compose cannot run on the development machines: this checks the file against the repository. */
interface Service {
  image?: string;
  build?: string;
  restart?: string;
  volumes?: string[];
  ports?: string[];
  healthcheck?: { test: string[] };
  environment?: Record<string, string>;
  secrets?: { source: string; mode?: number }[];
  command?: string[];
  depends_on?: string[] | Record<string, unknown>;
  profiles?: string[];
}
interface Compose {
  services: Record<string, Service>;
  secrets: Record<string, { environment?: string; file?: string }>;
  volumes: Record<string, unknown>;
}
const text = readFileSync('docker-compose.yml', 'utf8');
const compose = parse(text) as Compose;
const services = compose.services;

/** Compose's interpolation: ${NAME}, ${NAME:-default}, ${NAME-default}, ${NAME:?error}, ${NAME?error}, $$. */
function interpolate(source: string, env: Record<string, string>): string {
  return source.replace(
    /\$\$|\$\{([A-Z_][A-Z0-9_]*)(?:(:?)([-?])([^}]*))?\}/g,
    (match, name: string, colon: string, op: string | undefined, arg: string) => {
      if (match === '$$') return '$';
      const value = env[name];
      const unset = value === undefined || (colon === ':' && value === '');
      if (!op) return value ?? '';
      if (op === '-') return unset ? arg : (value as string);
      if (unset) throw new Error(`${name}: ${arg}`);
      return value as string;
    },
  );
}
/** The stack as compose sees it with these variables set on the host: it interpolates the parsed strings. */
function stack(env: Record<string, string> = {}): Compose {
  const walk = (value: unknown): unknown =>
    typeof value === 'string'
      ? interpolate(value, env)
      : Array.isArray(value)
        ? value.map(walk)
        : value && typeof value === 'object'
          ? Object.fromEntries(Object.entries(value).map(([k, v]) => [k, walk(v)]))
          : value;
  return walk(parse(text)) as Compose;
}

/** Published ports: host address (none: every interface), host port or range, container port. */
function published(env: Record<string, string> = {}) {
  return Object.entries(stack(env).services).flatMap(([name, s]) =>
    (s.ports ?? []).map((port) => {
      const m = /^(?:([\d.]+):)?(\d+(?:-\d+)?):(\d+)$/.exec(port);
      expect(m, `${name}: ${port}`).not.toBeNull();
      return { name, address: m?.[1], host: m?.[2] as string, container: Number(m?.[3]) };
    }),
  );
}

const datasources = parse(readFileSync('grafana/provisioning/datasources/datasources.yml', 'utf8'))
  .datasources as {
  uid: string;
  type: string;
  url: string;
  secureJsonData?: Record<string, string>;
  jsonData?: Record<string, unknown>;
}[];
const datasource = (type: string) => datasources.find((d) => d.type === type);
const catalogue = readFileSync('docs/metrics.md', 'utf8');

describe('docker-compose.yml', () => {
  it('runs the whole stack with its backups, and the retraining job and the daily report only when their profiles are asked for', () => {
    expect(
      Object.entries(services)
        .filter(([, s]) => !s.profiles)
        .map(([name]) => name)
        .sort(),
    ).toEqual(
      [
        'alertmanager',
        'backup',
        'flagd',
        'grafana',
        'jaeger',
        'postgres',
        'prometheus',
        'redis',
        'service',
      ].sort(),
    );
    expect(services.retrain?.profiles).toEqual(['retrain']);
    expect(services['daily-report']?.profiles).toEqual(['reports']);
  });

  it('pins every image to a version', () => {
    for (const [name, s] of Object.entries(services)) {
      if (s.build) continue;
      expect(s.image, name).toMatch(/:v?\d+\.\d+(\.\d+)?(-[a-z0-9]+)?$/);
    }
    // The Dockerfile's node image: its version is .node-version's (dockerfile.test.ts).
    expect(readFileSync('Dockerfile', 'utf8')).toMatch(/^ARG NODE_VERSION=\d+\.\d+\.\d+$/m);
  });

  it('starts the image as npm start does, on the compiled entry point', () => {
    const cmd = readFileSync('Dockerfile', 'utf8').match(/^CMD (\[.*\])$/m)?.[1];
    // npm start loads tsx to run the sources; the image runs what tsconfig.build.json compiled.
    const args = startArguments();
    expect(args.slice(-3)).toEqual(['--import', 'tsx', 'service/main.ts']);
    expect(JSON.parse(cmd ?? '[]')).toEqual(['node', ...args.slice(0, -3), 'service/main.js']);
  });

  it('gives every service a healthcheck, except distroless flagd (watched through the service) and the one-shot retraining job', () => {
    for (const [name, s] of Object.entries(services)) {
      if (name === 'flagd' || name === 'retrain' || name === 'daily-report') continue;
      expect(s.healthcheck?.test, name).toBeDefined();
    }
  });

  it('mounts only paths that exist, and the image copies only files that exist', () => {
    for (const [name, s] of Object.entries(services)) {
      for (const volume of s.volumes ?? []) {
        const host = volume.split(':')[0] as string;
        if (host.startsWith('.')) expect(existsSync(host), `${name}: ${host}`).toBe(true);
      }
    }
    for (const line of readFileSync('Dockerfile', 'utf8')
      .split('\n')
      .filter((l) => l.startsWith('COPY ') && !l.includes('--from='))) {
      for (const source of line.split(/\s+/).slice(1, -1)) {
        const dir = source.includes('*') ? source.slice(0, source.lastIndexOf('/')) : source;
        expect(existsSync(dir), line).toBe(true);
      }
    }
  });

  it('shares the flag file between flagd and the service, and syncs the service from flagd', () => {
    const flagdCommand = services.flagd?.command?.join(' ') ?? '';
    expect(flagdCommand).toContain('file:/etc/flagd/flags.json');
    expect(services.flagd?.volumes).toContain('./flagd:/etc/flagd:ro');
    expect(services.service?.volumes).toContain('./flagd:/app/flagd');
    expect(services.service?.volumes).toContain('./models:/app/models:ro');
    expect(services.service?.environment).toMatchObject({
      FLAGD_HOST: 'flagd',
      FLAGS_FILE: '/app/flagd/flags.json',
    });
    expect(existsSync('flagd/flags.json')).toBe(true);
  });

  it('wires Prometheus, Alertmanager and Grafana to the files in the repository', () => {
    const prometheus = parse(readFileSync('prometheus/prometheus.yml', 'utf8'));
    for (const file of prometheus.rule_files as string[])
      expect(existsSync(join('prometheus', file)), file).toBe(true);
    expect(prometheus.scrape_configs[0].dns_sd_configs).toEqual([
      {
        names: ['service'],
        type: 'A',
        port: Number(services.service?.environment?.METRICS_PORT),
        refresh_interval: '15s',
      },
    ]);
    expect(prometheus.alerting.alertmanagers[0].static_configs[0].targets).toEqual(['alertmanager:9093']);

    const alertmanager = parse(readFileSync('alertmanager/alertmanager.yml', 'utf8'));
    const webhook = alertmanager.receivers.find((r: { name: string }) => r.name === 'rollback-webhook')
      .webhook_configs[0];
    expect(webhook.url).toBe(
      `http://service:${services.service?.environment?.PORT}/v1/webhooks/alertmanager`,
    );
    expect(webhook.http_config.authorization.credentials_file).toBe('/run/secrets/webhook_token');
    expect(services.alertmanager?.secrets?.map((x) => x.source)).toContain('webhook_token');
    expect(services.service?.secrets?.map((x) => x.source)).toContain('webhook_token');
    expect(services.service?.environment?.ALERTMANAGER_WEBHOOK_TOKEN_FILE).toBe('/run/secrets/webhook_token');
    expect(compose.secrets.webhook_token?.environment).toBe('ALERTMANAGER_WEBHOOK_TOKEN');
    expect(services.service?.environment?.FEEDBACK_TOKEN_FILE).toBe('/run/secrets/feedback_token');
    expect(compose.secrets.feedback_token?.environment).toBe('FEEDBACK_TOKEN');

    const providers = parse(readFileSync('grafana/provisioning/dashboards/dashboards.yml', 'utf8')).providers;
    expect(services.grafana?.volumes).toContain(`./grafana/dashboards:${providers[0].options.path}:ro`);
  });

  it('scales the service (--scale service=3): no fixed host port, no container name, Postgres, every replica scraped, one promoter', () => {
    const service = services.service as Service & { container_name?: string };
    expect(service.container_name).toBeUndefined();
    for (const { host } of published().filter((p) => p.name === 'service')) {
      const [first, last = first] = host.split('-').map(Number) as [number, number?];
      // A range of at least three host ports, or none.
      expect((last as number) - first, host).toBeGreaterThanOrEqual(2);
    }
    // PGlite serves one process: the replicas share Postgres, which also holds the promoter's leader lock.
    expect(service.environment?.DATABASE_URL).toMatch(/^postgres:\/\/.*@postgres:5432\//);
    // Compose's own interpolation: off unless the host sets AUTO_PROMOTE.
    expect(service.environment?.AUTO_PROMOTE).toMatch(/^\$\{AUTO_PROMOTE:-false\}$/);
    expect(service.environment?.PROMETHEUS_URL).toBe('http://prometheus:9090');
    const prometheus = parse(readFileSync('prometheus/prometheus.yml', 'utf8'));
    expect(prometheus.scrape_configs[0].static_configs).toBeUndefined();
  });

  it('restarts every service unless it was stopped, and never the one-shot retraining job', () => {
    for (const [name, s] of Object.entries(services))
      expect(s.restart, name).toBe(name === 'retrain' || name === 'daily-report' ? 'no' : 'unless-stopped');
  });

  it('publishes the admin UIs, flagd and the metrics port on loopback unless ADMIN_BIND_ADDRESS says otherwise', () => {
    const admin = [
      ['prometheus', 9090],
      ['alertmanager', 9093],
      ['grafana', 3000],
      ['jaeger', 16686],
      ['flagd', 8013],
      ['flagd', 8014],
      ['service', 9464],
    ];
    const isAdmin = (p: { name: string; container: number }) =>
      admin.some(([name, port]) => p.name === name && p.container === port);
    const defaults = published();
    const elsewhere = published({ ADMIN_BIND_ADDRESS: '0.0.0.0' });
    for (const [name, port] of admin)
      expect(
        defaults.some((p) => p.name === name && p.container === port),
        `${name}:${port}`,
      ).toBe(true);
    // By default nothing but the API listens beyond this host.
    for (const p of defaults)
      expect(p.address, `${p.name}:${p.container}`).toBe(
        p.name === 'service' && p.container === 8080 ? undefined : '127.0.0.1',
      );
    for (const p of elsewhere) if (isAdmin(p)) expect(p.address, `${p.name}:${p.container}`).toBe('0.0.0.0');
    // Postgres stays on loopback whatever the admin UIs do.
    expect(elsewhere.filter((p) => p.name === 'postgres')).toEqual([
      { name: 'postgres', address: '127.0.0.1', host: '5433', container: 5432 },
    ]);
  });

  it('keeps the data of Postgres, Prometheus, Alertmanager and Grafana, and the backups, in named volumes', () => {
    expect(Object.keys(compose.volumes).sort()).toEqual(
      ['alertmanager-data', 'backups', 'grafana-data', 'pgdata', 'prometheus-data'].sort(),
    );
    expect(services.backup?.volumes).toContain('backups:/backups');
    expect(services.postgres?.volumes).toContain('pgdata:/var/lib/postgresql/data');
    expect(services.prometheus?.volumes).toContain('prometheus-data:/prometheus');
    expect(services.prometheus?.command).toContain('--storage.tsdb.path=/prometheus');
    expect(services.alertmanager?.volumes).toContain('alertmanager-data:/alertmanager');
    expect(services.alertmanager?.command).toContain('--storage.path=/alertmanager');
    expect(services.grafana?.volumes).toContain('grafana-data:/var/lib/grafana');
    const used = Object.values(services).flatMap((s) =>
      (s.volumes ?? []).map((v) => v.split(':')[0] as string).filter((source) => !/^[./]/.test(source)),
    );
    expect([...new Set(used)].sort()).toEqual(Object.keys(compose.volumes).sort());
  });

  it('hands every secret to its containers as a file, readable by their users, and puts none in an environment', () => {
    expect(compose.secrets).toEqual({
      postgres_password: { environment: 'POSTGRES_PASSWORD' },
      grafana_admin_password: { environment: 'GRAFANA_ADMIN_PASSWORD' },
      webhook_token: { environment: 'ALERTMANAGER_WEBHOOK_TOKEN' },
      feedback_token: { environment: 'FEEDBACK_TOKEN' },
      reports_token: { environment: 'REPORTS_TOKEN' },
      booking_ref_key: { environment: 'BOOKING_REF_KEY' },
      grafana_db_password: { environment: 'GRAFANA_DB_PASSWORD' },
    });
    const secretVariables = Object.values(compose.secrets).map((s) => s.environment as string);
    for (const [name, s] of Object.entries(services)) {
      for (const variable of secretVariables)
        expect(JSON.stringify(s.environment ?? {}), `${name}: ${variable}`).not.toContain(`\${${variable}`);
      for (const secret of s.secrets ?? []) {
        expect(Object.keys(compose.secrets), name).toContain(secret.source);
        // Not root's alone: the service, Grafana and Alertmanager run as other users.
        expect(secret.mode, `${name}: ${secret.source}`).toBe(0o444);
      }
      // Every secret file a service is told to read is mounted in it.
      for (const value of Object.values(s.environment ?? {})) {
        const secret = /^\/run\/secrets\/(.+)$/.exec(value)?.[1];
        if (secret)
          expect(
            s.secrets?.map((x) => x.source),
            `${name}: ${value}`,
          ).toContain(secret);
      }
    }
    expect(services.postgres?.environment?.POSTGRES_PASSWORD_FILE).toBe('/run/secrets/postgres_password');
    expect(services.grafana?.environment?.GF_SECURITY_ADMIN_PASSWORD__FILE).toBe(
      '/run/secrets/grafana_admin_password',
    );
    expect(services.service?.environment?.DATABASE_PASSWORD_FILE).toBe('/run/secrets/postgres_password');
    // Grafana's Postgres datasource logs in as its read-only role, whose password the init script sets from the
    // same secret, mounted in Postgres; Grafana holds no password of the schema's owner.
    const postgresSource = datasource('grafana-postgresql-datasource') as (typeof datasources)[number] & {
      user?: string;
    };
    expect(postgresSource.user).toBe('delay_grafana');
    expect(postgresSource.secureJsonData?.password).toBe('$__file{/run/secrets/grafana_db_password}');
    expect(services.grafana?.secrets?.map((x) => x.source).sort()).toEqual([
      'grafana_admin_password',
      'grafana_db_password',
    ]);
    expect(services.postgres?.secrets?.map((x) => x.source)).toContain('grafana_db_password');
    expect(services.postgres?.volumes).toContain(
      './deploy/compose/postgres-init:/docker-entrypoint-initdb.d:ro',
    );
    const init = readFileSync('deploy/compose/postgres-init/10-grafana-role.sh', 'utf8');
    expect(init).toContain('/run/secrets/grafana_db_password');
    expect(init).toContain('role delay_grafana');
  });

  it('gives the service an environment its config accepts, the secrets read from their files', async () => {
    const { default: postgres } = await import('postgres');
    const dir = tempDir();
    const values: Record<string, string> = {
      postgres_password: 'a password/with:odd@characters',
      webhook_token: 'webhook-token-of-compose-1',
      feedback_token: 'feedback-token-of-compose-1',
      reports_token: 'reports-token-of-compose-1',
      booking_ref_key: 'booking-ref-key-of-compose-1',
    };
    const environment = Object.entries(stack().services.service?.environment ?? {}).map(([key, value]) => {
      const secret = /^\/run\/secrets\/(.+)$/.exec(value)?.[1];
      if (!secret) return [key, value];
      writeFileSync(join(dir, secret), values[secret] as string);
      return [key, join(dir, secret)];
    });
    const config = loadConfig(Object.fromEntries(environment));
    expect(config.webhookToken).toBe(values.webhook_token);
    expect(config.feedbackToken).toBe(values.feedback_token);
    expect(config.reportsToken).toBe(values.reports_token);
    expect(config.bookingRefKey).toBe(values.booking_ref_key);
    expect(config.flags).toMatchObject({ kind: 'flagd', host: 'flagd', port: 8015 });
    expect(config.otlpEndpoint).toBe('http://jaeger:4318');
    const sql = postgres(config.database.url as string);
    expect(sql.options).toMatchObject({ pass: values.postgres_password, user: 'delay', host: ['postgres'] });
    await sql.end();
  });

  it('sends the traces to Jaeger, which Grafana reads under the uid the Recent predictions link names', () => {
    expect(services.jaeger?.image).toMatch(/^jaegertracing\/jaeger:2\.\d+\.\d+$/);
    // OTLP/HTTP's port; the service posts to /v1/traces on this root.
    expect(services.service?.environment?.OTEL_EXPORTER_OTLP_ENDPOINT).toBe('http://jaeger:4318');
    expect(services.service?.depends_on).toHaveProperty('jaeger');
    expect(services.grafana?.depends_on).toContain('jaeger');
    const jaeger = datasource('jaeger');
    expect(jaeger?.url).toBe('http://jaeger:16686');

    const dashboard = JSON.parse(readFileSync('grafana/dashboards/predictions.json', 'utf8'));
    const panel = dashboard.panels.find((p: { title: string }) => p.title === 'Latest predictions');
    expect(panel.targets[0].rawSql).toMatch(/\bp\.trace_id\b.* from predictions p\b/);
    const override = panel.fieldConfig.overrides.find(
      (o: { matcher: { id: string; options: string } }) =>
        o.matcher.id === 'byName' && o.matcher.options === 'trace_id',
    );
    const links = override.properties.find((p: { id: string }) => p.id === 'links').value;
    expect(links).toEqual([
      expect.objectContaining({
        internal: {
          datasourceUid: jaeger?.uid,
          datasourceName: 'Jaeger',
          // biome-ignore lint/suspicious/noTemplateCurlyInString: Grafana's variable, the cell's value
          query: { query: '${__value.raw}' },
        },
      }),
    ]);
  });

  it('links a span to the metrics of its route, with catalogued metrics and labels', () => {
    const toMetrics = datasource('jaeger')?.jsonData?.tracesToMetrics as {
      datasourceUid: string;
      tags: { key: string; value: string }[];
      queries: { name: string; query: string }[];
    };
    expect(datasource('prometheus')?.uid).toBe(toMetrics.datasourceUid);
    expect(toMetrics.tags).toEqual([{ key: 'http.route', value: 'http_route' }]);
    expect(catalogue).toContain('`http_route`');
    expect(toMetrics.queries.length).toBeGreaterThan(0);
    for (const { name, query } of toMetrics.queries) {
      // $$ escapes Grafana's own variable expansion in provisioning files; Grafana then puts the span's tags in.
      expect(query, name).toContain('{$$__tags}');
      for (const metric of query.match(/\b[a-z_]+(?=\{)/g) ?? [])
        expect(catalogue, `${name}: ${metric}`).toContain(metric.replace(/_(bucket|count|sum)$/, ''));
    }
  });

  it('backs Postgres up weekly with deploy/backup/backup.sh, pruning at the age the service purges rows at', () => {
    const backup = services.backup as Service & { init?: boolean; read_only?: boolean; cap_drop?: string[] };
    // pg_dump of the server's own version.
    expect(backup.image).toBe(services.postgres?.image);
    expect(backup.depends_on).toEqual({ postgres: { condition: 'service_healthy' } });
    expect(backup.volumes).toContain('./deploy/backup:/backup:ro');
    // Weekly; an hour after a failure.
    expect(backup.command).toEqual([
      'sh',
      '-c',
      'while :; do if sh /backup/backup.sh; then sleep 604800; else sleep 3600; fi; done',
    ]);
    expect(backup.secrets?.map((x) => x.source)).toEqual(['postgres_password']);
    const env = stack().services.backup?.environment;
    expect(env).toEqual({
      DATABASE_URL: services.service?.environment?.DATABASE_URL,
      DATABASE_PASSWORD_FILE: '/run/secrets/postgres_password',
      BACKUP_DIR: '/backups',
      RETENTION_DAYS: String(loadConfig({}).database.retentionDays),
    });
    // One retention for the rows and the dumps: RETENTION_DAYS on the host sets both.
    const shorter = stack({ RETENTION_DAYS: '30' }).services;
    expect(shorter.backup?.environment?.RETENTION_DAYS).toBe('30');
    expect(shorter.service?.environment?.RETENTION_DAYS).toBe('30');
    expect(backup.init).toBe(true);
    expect(backup.read_only).toBe(true);
    expect(backup.cap_drop).toEqual(['ALL']);
  });

  it('reports the backup unhealthy without a dump of the last 8 days', async () => {
    const [kind, command] = (services.backup?.healthcheck?.test ?? []) as [string, string];
    expect(kind).toBe('CMD-SHELL');
    const dir = tempDir();
    const healthy = async () =>
      (await runChild('sh', ['-c', command.replaceAll('/backups', dir)])).code === 0;
    const file = (name: string, days: number) => {
      writeFileSync(join(dir, name), 'x');
      const then = new Date(Date.now() - days * 24 * 3_600_000);
      utimesSync(join(dir, name), then, then);
    };
    expect(await healthy()).toBe(false);
    file('delay-prediction-20240101T020000Z.dump', 9);
    file('.delay-prediction-20240108T020000Z.dump.partial', 0);
    file('notes.txt', 0);
    expect(await healthy()).toBe(false);
    file('delay-prediction-20240108T020000Z.dump', 7.5);
    expect(await healthy()).toBe(true);
  });

  it.skipIf(!monitoringBinaries('promtool'))('links a span to queries Prometheus parses (promtool)', () => {
    const toMetrics = datasource('jaeger')?.jsonData?.tracesToMetrics as { queries: { query: string }[] };
    const file = join(tempDir(), 'span-queries.yml');
    const expr = (query: string) =>
      query.replaceAll('$$', '$').replaceAll('$__tags', 'http_route="/v1/predictions"');
    writeFileSync(
      file,
      stringify({
        groups: [
          {
            name: 'traces-to-metrics',
            rules: toMetrics.queries.map((q, i) => ({ record: `span:query:${i}`, expr: expr(q.query) })),
          },
        ],
      }),
    );
    const run = spawnSync('promtool', ['check', 'rules', file], { encoding: 'utf8' });
    expect(run.status, run.stdout + run.stderr).toBe(0);
  });
});
