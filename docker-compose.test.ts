import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { startArguments } from './service/test-support/process.js';

/* docker compose cannot run on the development machines: this checks the file against the repository. */
interface Service {
  image?: string;
  build?: string;
  volumes?: string[];
  healthcheck?: { test: string[] };
  environment?: Record<string, string>;
  secrets?: string[];
  command?: string[];
}
const compose = parse(readFileSync('docker-compose.yml', 'utf8')) as {
  services: Record<string, Service>;
  secrets: Record<string, { environment?: string; file?: string }>;
};
const services = compose.services;

describe('docker-compose.yml', () => {
  it('runs the whole stack', () => {
    expect(Object.keys(services).sort()).toEqual(
      ['alertmanager', 'flagd', 'grafana', 'postgres', 'prometheus', 'redis', 'service'].sort(),
    );
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

  it('gives every service a healthcheck, except distroless flagd (watched through the service)', () => {
    for (const [name, s] of Object.entries(services)) {
      if (name === 'flagd') continue;
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
    expect(services.alertmanager?.secrets).toContain('webhook_token');
    expect(services.service?.secrets).toContain('webhook_token');
    expect(services.service?.environment?.ALERTMANAGER_WEBHOOK_TOKEN_FILE).toBe('/run/secrets/webhook_token');
    expect(compose.secrets.webhook_token?.environment).toBe('ALERTMANAGER_WEBHOOK_TOKEN');
    expect(services.service?.environment?.FEEDBACK_TOKEN_FILE).toBe('/run/secrets/feedback_token');
    expect(compose.secrets.feedback_token?.environment).toBe('FEEDBACK_TOKEN');

    const providers = parse(readFileSync('grafana/provisioning/dashboards/dashboards.yml', 'utf8')).providers;
    expect(services.grafana?.volumes).toContain(`./grafana/dashboards:${providers[0].options.path}:ro`);
  });

  it('scales the service (--scale service=3): no fixed host port, no container name, Postgres, every replica scraped, one promoter', () => {
    const service = services.service as Service & { ports?: string[]; container_name?: string };
    expect(service.container_name).toBeUndefined();
    for (const port of service.ports ?? []) {
      const host = /^(?:[\d.]+:)?(\d+)(?:-(\d+))?:\d+$/.exec(port);
      expect(host, port).not.toBeNull();
      // A range of at least three host ports, or none.
      expect(Number(host?.[2] ?? host?.[1]) - Number(host?.[1]), port).toBeGreaterThanOrEqual(2);
    }
    // PGlite serves one process: the replicas share Postgres, which also holds the promoter's leader lock.
    expect(service.environment?.DATABASE_URL).toMatch(/^postgres:\/\/.*@postgres:5432\//);
    // Compose's own interpolation: off unless the host sets AUTO_PROMOTE.
    expect(service.environment?.AUTO_PROMOTE).toMatch(/^\$\{AUTO_PROMOTE:-false\}$/);
    expect(service.environment?.PROMETHEUS_URL).toBe('http://prometheus:9090');
    const prometheus = parse(readFileSync('prometheus/prometheus.yml', 'utf8'));
    expect(prometheus.scrape_configs[0].static_configs).toBeUndefined();
  });
});
