import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parse, stringify } from 'yaml';
import { presentOrSkip } from './availability.js';
import { tempDir } from './harness.js';
import { freePort } from './process.js';

/** Whether Debian's binaries are here; under CI=true their absence is a failure, not a skip. */
export function monitoringBinaries(...binaries: string[]): boolean {
  const missing = binaries.filter((b) => spawnSync(b, ['--version']).status !== 0);
  return presentOrSkip(
    missing.length === 0
      ? null
      : `${missing.join(' and ')} not found (apt install prometheus prometheus-alertmanager)`,
  );
}

export interface Monitor {
  url: string;
  process: ChildProcess;
}

/**
 * The repository's prometheus.yml with test overrides only: 1 s scrape and evaluation, the services' metrics
 * ports as targets, rule files by absolute path (`alerts` may replace alerts.yml), and an Alertmanager or none.
 */
export async function startPrometheus(options: {
  metricsPorts: number[];
  alertmanagerUrl?: string;
  alertsFile?: string;
}): Promise<Monitor> {
  const dir = tempDir('delay-prometheus-');
  const config = parse(readFileSync('prometheus/prometheus.yml', 'utf8'));
  config.global = { scrape_interval: '1s', evaluation_interval: '1s' };
  config.rule_files = [
    resolve('prometheus/rules/recording.yml'),
    resolve('prometheus/rules/slo.yml'),
    options.alertsFile ?? resolve('prometheus/rules/alerts.yml'),
  ];
  // The compose file discovers the replicas by DNS; here they are on loopback ports.
  const { dns_sd_configs: _, ...job } = config.scrape_configs[0];
  config.scrape_configs[0] = {
    ...job,
    static_configs: [{ targets: options.metricsPorts.map((p) => `127.0.0.1:${p}`) }],
  };
  if (options.alertmanagerUrl)
    config.alerting.alertmanagers[0].static_configs[0].targets = [new URL(options.alertmanagerUrl).host];
  else config.alerting = undefined;
  writeFileSync(join(dir, 'prometheus.yml'), stringify(config));
  mkdirSync(join(dir, 'data'));
  const port = await freePort();
  const child = spawn(
    'prometheus',
    [
      `--config.file=${join(dir, 'prometheus.yml')}`,
      `--storage.tsdb.path=${join(dir, 'data')}`,
      `--web.listen-address=127.0.0.1:${port}`,
    ],
    { stdio: 'ignore' },
  );
  return { url: `http://127.0.0.1:${port}`, process: child };
}

/** The repository's alertmanager.yml with 1 s grouping and the rollback webhook pointed at `webhookUrl`. */
export async function startAlertmanager(options: {
  webhookUrl: string;
  tokenFile: string;
}): Promise<Monitor> {
  const dir = tempDir('delay-alertmanager-');
  const config = parse(readFileSync('alertmanager/alertmanager.yml', 'utf8'));
  for (const route of [config.route, ...config.route.routes]) {
    route.group_wait = '1s';
    route.group_interval = '1s';
  }
  const webhook = config.receivers.find((r: { name: string }) => r.name === 'rollback-webhook')
    .webhook_configs[0];
  webhook.url = options.webhookUrl;
  webhook.http_config.authorization.credentials_file = options.tokenFile;
  writeFileSync(join(dir, 'alertmanager.yml'), stringify(config));
  mkdirSync(join(dir, 'data'));
  const port = await freePort();
  const child = spawn(
    'prometheus-alertmanager',
    [
      `--config.file=${join(dir, 'alertmanager.yml')}`,
      `--storage.path=${join(dir, 'data')}`,
      `--web.listen-address=127.0.0.1:${port}`,
      '--cluster.listen-address=',
    ],
    { stdio: 'ignore' },
  );
  return { url: `http://127.0.0.1:${port}`, process: child };
}

/** An instant query's result vector. */
export async function promQuery(
  url: string,
  expr: string,
): Promise<{ metric: Record<string, string>; value: [number, string] }[]> {
  const res = await fetch(`${url}/api/v1/query?query=${encodeURIComponent(expr)}`);
  const body = (await res.json()) as {
    status: string;
    data: { result: { metric: Record<string, string>; value: [number, string] }[] };
    error?: string;
  };
  if (body.status !== 'success') throw new Error(`${expr}: ${body.error}`);
  return body.data.result;
}

/**
 * The rollback loop around one service as the tests run it: the repository's alerts with every `for` shortened
 * to `forDuration`, a real Prometheus scraping the service, a real Alertmanager posting to its webhook with
 * `token`. The caller stops the two processes.
 */
export async function startRollbackLoop(options: {
  service: { port: number; metricsPort: number };
  token: string;
  forDuration?: string;
}): Promise<{ prometheus: Monitor; alertmanager: Monitor }> {
  const dir = tempDir('delay-rollback-loop-');
  const tokenFile = join(dir, 'webhook-token');
  writeFileSync(tokenFile, options.token);
  const alertmanager = await startAlertmanager({
    webhookUrl: `http://127.0.0.1:${options.service.port}/v1/webhooks/alertmanager`,
    tokenFile,
  });
  const alerts = parse(readFileSync('prometheus/rules/alerts.yml', 'utf8'));
  for (const group of alerts.groups) for (const rule of group.rules) rule.for = options.forDuration ?? '2s';
  writeFileSync(join(dir, 'alerts.yml'), stringify(alerts));
  const prometheus = await startPrometheus({
    metricsPorts: [options.service.metricsPort],
    alertmanagerUrl: alertmanager.url,
    alertsFile: join(dir, 'alerts.yml'),
  });
  return { prometheus, alertmanager };
}

/**
 * Posts feedback until every item is recorded: a prediction is stored off the hot path, so its feedback is
 * answered unknown_booking until the prediction log has written it. Throws after 50 tries (10 s).
 */
export async function postFeedbackUntilStored(
  post: (path: string, body: unknown) => Promise<unknown>,
  feedback: { booking_id: string; actual_delay_minutes: number }[],
) {
  let waiting = feedback;
  for (let attempt = 0; waiting.length > 0; attempt++) {
    if (attempt === 50) throw new Error(`${waiting.length} predictions never stored`);
    await new Promise((r) => setTimeout(r, 200));
    const { results } = (await post('/v1/feedback/batch', { feedback: waiting })) as {
      results: { booking_id: string; outcome: string }[];
    };
    const unknown = new Set(results.filter((r) => r.outcome === 'unknown_booking').map((r) => r.booking_id));
    waiting = waiting.filter((f) => unknown.has(f.booking_id));
  }
}
