import { execFile, spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { Route } from '@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1alpha1';
import { describe, expect, it } from 'vitest';
import { parse, parseAllDocuments, stringify } from 'yaml';
import { SEVERITIES } from '../../prometheus/rule-conventions.js';
import { presentOrSkip } from '../../service/test-support/availability.js';
import { tempDir } from '../../service/test-support/harness.js';
import { monitoringBinaries } from '../../service/test-support/monitoring.js';

/*
 * The AlertmanagerConfig holds compose's routing tree (docs/adr/0012-paging-policy.md). No cluster here: the package
 * is rendered with kubectl's kustomize, turned into the Alertmanager configuration the Prometheus Operator would
 * write from it, and both that and alertmanager/alertmanager.yml are asked by amtool who each alert reaches.
 */
const hasTools =
  presentOrSkip(
    spawnSync('kubectl', ['version', '--client'], { stdio: 'ignore' }).status === 0
      ? null
      : 'kubectl not found',
  ) && monitoringBinaries('amtool');
const run = promisify(execFile);

type Matcher = { name: string; value?: string; matchType?: '=' | '!=' | '=~' | '!~' };
type AmcRoute = {
  receiver?: string;
  matchers?: Matcher[];
  groupBy?: string[];
  groupWait?: string;
  groupInterval?: string;
  repeatInterval?: string;
  continue?: boolean;
  routes?: AmcRoute[];
};
type AmcReceiver = {
  name: string;
  webhookConfigs?: {
    url?: string;
    urlSecret?: { name: string; key: string };
    sendResolved?: boolean;
    maxAlerts?: number;
    httpConfig?: { authorization: { type: string; credentials: { name: string; key: string } } };
  }[];
};
type InhibitRule = { source_matchers: string[]; target_matchers: string[]; equal: string[] };
type AlertmanagerConfig = {
  metadata: { name: string; namespace: string };
  spec: {
    route: AmcRoute;
    receivers: AmcReceiver[];
    inhibitRules?: { sourceMatch: Matcher[]; targetMatch: Matcher[]; equal: string[] }[];
  };
};

const matcher = (m: Matcher) => `${m.name}${m.matchType ?? '='}${JSON.stringify(m.value ?? '')}`;
/** The cluster's own tree, which the operator hangs every AlertmanagerConfig's route under. */
const CLUSTER_ROOT = 'cluster-default';

/**
 * The Alertmanager configuration the Prometheus Operator writes from one AlertmanagerConfig (OnNamespace, its
 * default): the route is a first-level route with the namespace's matcher and continue: true, the inhibitions get
 * the namespace's matcher on both sides, receivers are <namespace>/<name>/<receiver>; secrets become placeholders.
 * Only what this repository's file uses is converted; anything else is refused, not dropped.
 */
function operatorConfig(amc: AlertmanagerConfig) {
  const { namespace, name } = amc.metadata;
  const prefix = (receiver?: string) => receiver && `${namespace}/${name}/${receiver}`;
  const inNamespace = `namespace=${JSON.stringify(namespace)}`;
  const route = (r: AmcRoute, top: boolean): object => ({
    receiver: prefix(r.receiver),
    matchers: [
      ...(r.matchers ?? []).filter((m) => !top || m.name !== 'namespace').map(matcher),
      ...(top ? [inNamespace] : []),
    ],
    group_by: r.groupBy,
    group_wait: r.groupWait,
    group_interval: r.groupInterval,
    repeat_interval: r.repeatInterval,
    continue: top ? true : r.continue,
    routes: r.routes?.map((child) => route(child, false)),
  });
  const receiver = (r: AmcReceiver) => {
    const unknown = Object.keys(r).filter((k) => k !== 'name' && k !== 'webhookConfigs');
    if (unknown.length > 0) throw new Error(`receiver ${r.name}: ${unknown.join(', ')} not converted`);
    return {
      name: prefix(r.name),
      webhook_configs: r.webhookConfigs?.map((w) => ({
        url: w.urlSecret ? `http://${w.urlSecret.key}.${w.urlSecret.name}.invalid/` : w.url,
        send_resolved: w.sendResolved,
        max_alerts: w.maxAlerts,
        http_config: w.httpConfig && {
          authorization: { type: w.httpConfig.authorization.type, credentials: 'from-the-secret' },
        },
      })),
    };
  };
  return {
    route: { receiver: CLUSTER_ROOT, routes: [route(amc.spec.route, true)] },
    inhibit_rules: (amc.spec.inhibitRules ?? []).map((r) => ({
      source_matchers: [...r.sourceMatch.map(matcher), inNamespace],
      target_matchers: [...r.targetMatch.map(matcher), inNamespace],
      equal: r.equal,
    })),
    receivers: [{ name: CLUSTER_ROOT }, ...(amc.spec.receivers ?? []).map(receiver)],
  };
}

const routeTest = async (file: string, labels: Record<string, string>) =>
  (
    await run('amtool', [
      'config',
      'routes',
      'test',
      `--config.file=${file}`,
      ...Object.entries(labels).map(([k, v]) => `${k}=${v}`),
    ])
  ).stdout.trim();

describe.skipIf(!hasTools)('the AlertmanagerConfig (rendered) holds compose routing tree', () => {
  const rendered: { kind: string; metadata: { name: string } }[] = hasTools
    ? parseAllDocuments(
        spawnSync('kubectl', ['kustomize', 'deploy/kubernetes'], { encoding: 'utf8' }).stdout,
      ).map((d) => d.toJSON())
    : [];
  const amc = rendered.find((o) => o.kind === 'AlertmanagerConfig') as unknown as AlertmanagerConfig;
  const service = rendered.find((o) => o.kind === 'Service');
  const compose = parse(readFileSync('alertmanager/alertmanager.yml', 'utf8'));
  const dir = tempDir('delay-amc-');
  const operatorFile = join(dir, 'alertmanager.yml');
  if (hasTools) writeFileSync(operatorFile, stringify(operatorConfig(amc)));
  /** The job prometheus/prometheus.yml scrapes the service as (on Kubernetes: the Service's name). */
  const JOB: string = parse(readFileSync('prometheus/prometheus.yml', 'utf8')).scrape_configs[0].job_name;

  it('has child routes the operator accepts, and is a configuration Alertmanager loads', () => {
    const routes = (r: AmcRoute): AmcRoute[] => (r.routes ?? []).flatMap((c) => [c, ...routes(c)]);
    const children = routes(amc.spec.route);
    expect(children.length).toBeGreaterThan(0);
    // The CRD types child routes as free JSON: each is checked against the Route schema here.
    for (const child of children) expect(() => new Route(child).validate(), child.receiver).not.toThrow();
    const checked = spawnSync('amtool', ['check-config', operatorFile], { encoding: 'utf8' });
    expect(checked.status, checked.stdout + checked.stderr).toBe(0);
  });

  it('sends every severity, rollback or not, and the watchdog to the same receivers as compose', async () => {
    const probes: Record<string, string>[] = [];
    for (const alertname of ['DelayWatchdog', 'DelayProbe'])
      for (const severity of [...SEVERITIES, 'critical', undefined])
        for (const rollback of ['true', undefined])
          probes.push({
            alertname,
            ...(severity && { severity }),
            ...(rollback && { rollback }),
            job: JOB,
            namespace: amc.metadata.namespace,
          });
    const ours = `${amc.metadata.namespace}/${amc.metadata.name}/`;
    const [here, there] = await Promise.all(
      ['alertmanager/alertmanager.yml', operatorFile].map((file) =>
        Promise.all(probes.map((labels) => routeTest(file, labels))),
      ),
    );
    const table = (answers: string[], strip = '') =>
      Object.fromEntries(
        probes.map((p, i) => [
          JSON.stringify(p),
          (answers[i] as string).split(',').map((r) => r.replace(strip, '')),
        ]),
      );
    expect(table(there as string[], ours)).toEqual(table(here as string[]));
    // Not a comparison of two empty trees: the probes reach the pager, the queue, the webhook and the switch.
    const reached = new Set(Object.values(table(here as string[])).flat());
    expect([...reached].sort()).toEqual(
      [
        'deadmans-switch',
        'oncall-pager',
        'recorded',
        'rollback-webhook',
        'team-channel',
        'ticket-queue',
      ].sort(),
    );
    // An alert of another namespace never reaches this namespace's routes.
    expect(
      await routeTest(operatorFile, {
        alertname: 'DelayProbe',
        severity: 'page',
        job: JOB,
        namespace: 'elsewhere',
      }),
    ).toBe(CLUSTER_ROOT);
  });

  it('waits and repeats as compose on every route', () => {
    type Timed = { receiver: string; group_wait?: string; group_interval?: string; repeat_interval?: string };
    const timing = (routes: Timed[], strip = '') =>
      routes.map((r) => [r.receiver.replace(strip, ''), r.group_wait, r.group_interval, r.repeat_interval]);
    const top = (operatorConfig(amc).route.routes[0] ?? {}) as Timed & { routes: Timed[] };
    const ours = `${amc.metadata.namespace}/${amc.metadata.name}/`;
    expect(timing([top, ...top.routes], ours)).toEqual(timing([compose.route, ...compose.route.routes]));
  });

  it('holds the same inhibitions, within this namespace', () => {
    const inNamespace = `namespace=${JSON.stringify(amc.metadata.namespace)}`;
    const normal = (rules: InhibitRule[], dropped = '') =>
      rules
        .map((r) => ({
          source: r.source_matchers.filter((m) => m !== dropped).sort(),
          target: r.target_matchers.filter((m) => m !== dropped).sort(),
          equal: [...r.equal].sort(),
        }))
        .sort((a, b) => JSON.stringify(a).localeCompare(JSON.stringify(b)));
    const amcRules = operatorConfig(amc).inhibit_rules;
    expect(compose.inhibit_rules.length).toBeGreaterThan(0);
    expect(normal(amcRules, inNamespace)).toEqual(normal(compose.inhibit_rules));
  });

  it('posts rollback alerts at once to this namespace service, with its token and compose max_alerts', () => {
    const rollback = compose.route.routes.find(
      (r: { receiver: string }) => r.receiver === 'rollback-webhook',
    );
    const route = amc.spec.route.routes?.find((r) => r.receiver === 'rollback-webhook');
    expect(route?.groupWait).toBe(rollback.group_wait);
    const webhook = amc.spec.receivers.find((r) => r.name === 'rollback-webhook')?.webhookConfigs?.[0];
    expect(webhook?.url).toBe(
      `http://${service?.metadata.name}.${amc.metadata.namespace}.svc/v1/webhooks/alertmanager`,
    );
    expect(webhook?.httpConfig?.authorization.credentials.key).toBe('webhook-token');
    expect(webhook?.maxAlerts).toBe(
      compose.receivers.find((r: { name: string }) => r.name === 'rollback-webhook').webhook_configs[0]
        .max_alerts,
    );
    // The people-facing URLs come from a Secret, never from this file.
    for (const r of amc.spec.receivers.filter((x) => x.name !== 'rollback-webhook'))
      for (const w of r.webhookConfigs ?? [])
        expect(w.urlSecret?.name, r.name).toBe('delay-prediction-alerting');
  });
});
