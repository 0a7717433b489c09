import { execFile, spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { CAUSES, DEPLOYMENT_LABELS, SEVERITIES } from '../prometheus/rule-conventions.js';
import { WEBHOOK_BODY_LIMIT_BYTES } from '../service/app.js';
import { ROLLBACK_SIGNALS } from '../service/domain/rollback-policy.js';
import { tempDir } from '../service/test-support/harness.js';
import { type Monitor, monitoringBinaries, startAlertmanager } from '../service/test-support/monitoring.js';
import { freePort } from '../service/test-support/process.js';

const hasAmtool = monitoringBinaries('amtool');
const hasAlertmanager = monitoringBinaries('prometheus-alertmanager');
/** The job prometheus/prometheus.yml scrapes the service as: every alert of its rules carries it. */
const JOB: string = parse(readFileSync('prometheus/prometheus.yml', 'utf8')).scrape_configs[0].job_name;
const config = parse(readFileSync('alertmanager/alertmanager.yml', 'utf8'));
type Route = { receiver: string; matchers?: string[]; group_wait?: string; repeat_interval?: string };
type InhibitRule = { source_matchers: string[]; target_matchers: string[]; equal: string[] };

const run = promisify(execFile);
const amtool = (...args: string[]) => spawnSync('amtool', args, { cwd: 'alertmanager', encoding: 'utf8' });
const routeOf = (...labels: string[]) => {
  const result = amtool('config', 'routes', 'test', '--config.file=alertmanager.yml', ...labels);
  expect(result.status, result.stderr).toBe(0);
  return result.stdout.trim();
};

type AlertRule = { alert: string; labels?: Record<string, string> };
const alertRules = (): AlertRule[] =>
  parse(readFileSync('prometheus/rules/alerts.yml', 'utf8')).groups.flatMap(
    (g: { rules: (AlertRule | { record: string })[] }) => g.rules.filter((r) => 'alert' in r),
  );

/** Who each severity tells (docs/adr/0012-paging-policy.md), in the routing tree's order. */
const TOLD: Record<(typeof SEVERITIES)[number], string[]> = {
  page: ['oncall-pager'],
  ticket: ['ticket-queue', 'team-channel'],
  info: ['recorded'],
};
/** Who the policy says an alert's labels reach: a severity outside the vocabulary reaches the team channel. */
function toldBySeverity(labels: Record<string, string>): string {
  if (labels.alertname === 'DelayWatchdog') return 'deadmans-switch';
  const told = TOLD[labels.severity as keyof typeof TOLD] ?? ['team-channel'];
  return [...(labels.rollback === 'true' && labels.job === JOB ? ['rollback-webhook'] : []), ...told].join(
    ',',
  );
}

describe.skipIf(!hasAmtool)('Alertmanager routes (amtool config routes test)', () => {
  it('is valid (amtool check-config)', () => {
    const result = amtool('check-config', 'alertmanager.yml');
    expect(result.status, result.stdout + result.stderr).toBe(0);
  });

  const ours = `job=${JOB}`;
  it.each([
    ['a page wakes on-call, and only on-call', ['alertname=DelayRollbackNotWritten', 'severity=page', ours]],
    [
      'a fast SLO burn pages',
      ['alertname=DelayAvailabilityBudgetBurn', 'severity=page', 'slo=availability', ours],
    ],
    ['a ticket goes to the queue and the team', ['alertname=DelayFeatureDrift', 'severity=ticket', ours]],
    [
      'a slow SLO burn is a ticket',
      ['alertname=DelayLatencyBudgetBurn', 'severity=ticket', 'slo=latency', ours],
    ],
    ['info tells no one', ['alertname=DelayTrafficUnlikeTraining', 'severity=info', ours]],
    [
      'a rollback alert: the webhook first, then a ticket and the team, no page',
      [
        'alertname=DelayModelLosingToRulesFast',
        'severity=ticket',
        'rollback=true',
        'component=model_quality',
        ours,
      ],
    ],
    [
      "another deployment's rollback alert: a ticket and the team, never this deployment's webhook",
      ['alertname=DelayModelFarFromRules', 'severity=ticket', 'rollback=true', 'job=delay-prediction-eu'],
    ],
    ["the watchdog: the dead man's switch alone", ['alertname=DelayWatchdog', 'severity=info', ours]],
    [
      "the watchdog, whatever its severity: the dead man's switch alone",
      ['alertname=DelayWatchdog', 'severity=page'],
    ],
    [
      'a severity outside the vocabulary: the team channel, to be fixed',
      ['alertname=Anything', 'severity=critical'],
    ],
    ['no severity at all: the team channel', ['alertname=Anything', ours]],
  ])('%s', (_, labels) => {
    const expected = toldBySeverity(Object.fromEntries(labels.map((l) => l.split('=') as [string, string])));
    expect(routeOf(...labels)).toBe(expected);
  });

  it('routes every alert of prometheus/rules as its severity says, and every rollback alert to the webhook', async () => {
    const rules = alertRules();
    expect(rules.length).toBeGreaterThan(10);
    expect(Object.keys(TOLD)).toEqual([...SEVERITIES]);
    const answers = await Promise.all(
      rules.map(async (rule) => {
        const labels: Record<string, string> = { alertname: rule.alert, job: JOB, ...rule.labels };
        expect(SEVERITIES, rule.alert).toContain(labels.severity);
        const { stdout } = await run('amtool', [
          'config',
          'routes',
          'test',
          '--config.file=alertmanager/alertmanager.yml',
          ...Object.entries(labels).map(([k, v]) => `${k}=${v}`),
        ]);
        return [rule.alert, stdout.trim(), toldBySeverity(labels)];
      }),
    );
    for (const [alert, reached, told] of answers) expect(reached, alert).toBe(told);
    for (const alertname of Object.keys(ROLLBACK_SIGNALS))
      expect(routeOf(`alertname=${alertname}`, 'severity=ticket', 'rollback=true', `job=${JOB}`)).toBe(
        'rollback-webhook,ticket-queue,team-channel',
      );
  });
});

describe('Alertmanager configuration', () => {
  const routes = config.route.routes as Route[];
  const route = (receiver: string) => routes.find((r) => r.receiver === receiver) as Route;

  it('sends the watchdog every minute and rollback alerts at once', () => {
    expect(route('deadmans-switch').repeat_interval).toBe('1m');
    expect(route('rollback-webhook').group_wait).toBe('0s');
  });

  it('keeps a rollback post within the webhook body limit (max_alerts)', () => {
    const webhook = config.receivers.find((r: { name: string }) => r.name === 'rollback-webhook')
      .webhook_configs[0];
    // A truncated post still holds a rollback alert; 100 alerts with long annotations stay far below the limit.
    expect(webhook.max_alerts).toBeGreaterThan(0);
    expect(webhook.max_alerts * 8 * 1024).toBeLessThan(WEBHOOK_BODY_LIMIT_BYTES);
  });

  it('groups by job and namespace on every route that groups, here and on Kubernetes', () => {
    const grouping = [config.route, ...routes].filter((r) => r.group_by);
    expect(grouping.length).toBeGreaterThan(0);
    for (const r of grouping)
      expect(r.group_by, r.receiver).toEqual(expect.arrayContaining([...DEPLOYMENT_LABELS]));
    const kubernetes = parse(
      readFileSync('deploy/kubernetes/base/monitoring/alertmanager-config.yaml', 'utf8'),
    );
    expect(kubernetes.spec.route.groupBy).toEqual(config.route.group_by);
  });

  it('inhibits only within one deployment, and never a rollback alert (inhibition comes before routing)', () => {
    for (const rule of config.inhibit_rules as InhibitRule[]) {
      expect(rule.equal).toEqual(expect.arrayContaining([...DEPLOYMENT_LABELS]));
      expect(rule.target_matchers).toContain('rollback!="true"');
    }
  });

  it('sends to the rollback webhook only the alerts of the job Prometheus scrapes this service as', () => {
    expect(route('rollback-webhook').matchers).toEqual(['rollback="true"', `job="${JOB}"`]);
  });

  it('silences what depends on a cause the rules raise, for every cause the rules name', () => {
    const labels = alertRules().map((r) => r.labels ?? {});
    const raised = new Set(labels.map((l) => l.cause).filter(Boolean));
    const dependedOn = new Set(labels.map((l) => l.depends_on).filter(Boolean));
    const inhibited = new Set(causesOf(config.inhibit_rules));
    expect(raised.size).toBeGreaterThan(0);
    // Each depends_on names a cause an alert raises and Alertmanager knows; each inhibition has its source.
    for (const cause of dependedOn) expect(raised, cause).toContain(cause);
    expect([...inhibited].sort()).toEqual([...raised].sort());
    expect([...inhibited].sort()).toEqual([...CAUSES].sort());
  });
});

/** The causes of the cause -> depends_on inhibitions, checked to have that exact shape. */
function causesOf(rules: InhibitRule[]): string[] {
  return rules.flatMap((rule) => {
    const source = /^cause="(.+)"$/.exec(rule.source_matchers[0] ?? '');
    if (!source) return [];
    expect(rule.target_matchers).toEqual([`depends_on="${source[1]}"`, 'rollback!="true"']);
    expect(rule.equal).toEqual([...DEPLOYMENT_LABELS]);
    return [source[1] as string];
  });
}

type Alert = Record<string, string>;
type Served = { labels: Alert; status: { state: string } };

describe.skipIf(!hasAlertmanager)(
  'Alertmanager inhibition (a real Alertmanager, the repository file)',
  () => {
    let alertmanager: Monitor | undefined;
    afterAll(() => alertmanager?.process.kill('SIGTERM'));

    it('pages once per cause within a deployment, holds a slow burn under its fast one, never holds a rollback', async () => {
      const dir = tempDir('delay-inhibition-');
      writeFileSync(join(dir, 'token'), 'unused');
      // Nothing listens on the webhook's port: only the alerts' state is read here.
      alertmanager = await startAlertmanager({
        webhookUrl: `http://127.0.0.1:${await freePort()}/v1/webhooks/alertmanager`,
        tokenFile: join(dir, 'token'),
      });
      const url = alertmanager.url;
      await until(async () => (await fetch(`${url}/-/ready`).catch(() => undefined))?.ok === true);
      const deployment = { job: JOB, namespace: 'delay-prediction' };
      const other = { job: 'delay-prediction-eu', namespace: 'delay-prediction-eu' };

      const sources: Alert[] = [];
      const expected: [Alert, 'active' | 'suppressed'][] = [];
      for (const cause of causesOf(config.inhibit_rules)) {
        const source = { alertname: `Cause-${cause}`, severity: 'page', cause, ...deployment };
        sources.push(source);
        expected.push([source, 'active']);
        const dependent = { severity: 'page', depends_on: cause };
        expected.push([{ alertname: `Dependent-${cause}`, ...dependent, ...deployment }, 'suppressed']);
        expected.push([{ alertname: `Dependent-${cause}`, ...dependent, ...other }, 'active']);
        expected.push([
          {
            alertname: `Rollback-${cause}`,
            ...dependent,
            severity: 'ticket',
            rollback: 'true',
            ...deployment,
          },
          'active',
        ]);
      }
      const fastBurn = { alertname: 'DelayAvailabilityBudgetBurn', severity: 'page', slo: 'availability' };
      const fast = { ...fastBurn, ...deployment };
      sources.push(fast);
      expected.push(
        [fast, 'active'],
        [{ ...fastBurn, severity: 'ticket', ...deployment }, 'suppressed'],
        [{ ...fastBurn, severity: 'ticket', ...other }, 'active'],
        [
          { alertname: 'DelayLatencyBudgetBurn', severity: 'ticket', slo: 'latency', ...deployment },
          'active',
        ],
        [{ alertname: 'DelayFeatureDrift', severity: 'ticket', ...deployment }, 'active'],
      );

      const post = async (alerts: Alert[]) => {
        const res = await fetch(`${url}/api/v2/alerts`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify(
            alerts.map((labels) => ({ labels, endsAt: new Date(Date.now() + 10 * 60_000).toISOString() })),
          ),
        });
        expect(res.status, await res.text()).toBe(200);
      };
      const key = (a: Alert) => JSON.stringify(Object.entries(a).sort());
      const states = async () => {
        const served = (await (await fetch(`${url}/api/v2/alerts`)).json()) as Served[];
        return new Map(served.map((a) => [key(a.labels), a.status.state]));
      };
      // The sources first, so that the inhibitor holds them when the targets arrive.
      await post(sources);
      await until(async () => (await states()).size === sources.length);
      await post(expected.map(([alert]) => alert).filter((a) => !sources.includes(a)));
      const want = new Map(expected.map(([alert, state]) => [key(alert), state]));
      let seen = new Map<string, string>();
      await until(async () => {
        seen = await states();
        return [...want].every(([k, state]) => seen.get(k) === state);
      }).catch(() => undefined);
      expect(Object.fromEntries(seen)).toEqual(Object.fromEntries(want));
    });
  },
);

async function until(check: () => Promise<boolean>, timeoutMs = 10_000) {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 100));
  }
}
