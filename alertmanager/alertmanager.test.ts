import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { DEPLOYMENT_LABELS } from '../prometheus/rule-conventions.js';
import { WEBHOOK_BODY_LIMIT_BYTES } from '../service/app.js';
import { ROLLBACK_SIGNALS } from '../service/domain/rollback-policy.js';
import { monitoringBinaries } from '../service/test-support/monitoring.js';

const hasAmtool = monitoringBinaries('amtool');
/** The job prometheus/prometheus.yml scrapes the service as: every alert of its rules carries it. */
const JOB: string = parse(readFileSync('prometheus/prometheus.yml', 'utf8')).scrape_configs[0].job_name;

const amtool = (...args: string[]) => spawnSync('amtool', args, { cwd: 'alertmanager', encoding: 'utf8' });
const routeOf = (...labels: string[]) => {
  const run = amtool('config', 'routes', 'test', '--config.file=alertmanager.yml', ...labels);
  expect(run.status, run.stderr).toBe(0);
  return run.stdout.trim();
};

describe.skipIf(!hasAmtool)('Alertmanager configuration (amtool)', () => {
  it('is valid', () => {
    const run = amtool('check-config', 'alertmanager.yml');
    expect(run.status, run.stdout + run.stderr).toBe(0);
  });

  it('sends rollback alerts to the webhook and pages on-call too', () => {
    expect(
      routeOf(
        'alertname=DelayModelLosingToRulesFast',
        'severity=critical',
        'rollback=true',
        'component=model_quality',
        `job=${JOB}`,
      ),
    ).toBe('rollback-webhook,oncall-pager');
    expect(
      routeOf('alertname=DelayMlErrorRatioHigh', 'severity=critical', 'rollback=true', `job=${JOB}`),
    ).toBe('rollback-webhook,oncall-pager');
  });

  it("never rolls back this deployment on another deployment's alert: that one pages only", () => {
    expect(
      routeOf(
        'alertname=DelayModelFarFromRules',
        'severity=critical',
        'rollback=true',
        'job=delay-prediction-eu',
      ),
    ).toBe('oncall-pager');
  });

  it('pages on critical alerts without rollback, and keeps warnings off the pager', () => {
    expect(routeOf('alertname=DelayFeatureDrift', 'severity=critical', 'component=model_quality')).toBe(
      'oncall-pager',
    );
    expect(routeOf('alertname=DelayServiceDown', 'severity=critical')).toBe('oncall-pager');
    expect(routeOf('alertname=DelayModelMaeDegraded', 'severity=warning', 'component=model_quality')).toBe(
      'team-channel',
    );
    expect(routeOf('alertname=DelayWeatherApiFailing', 'severity=warning')).toBe('team-channel');
  });

  it("sends the watchdog to the dead man's switch alone, every minute, and pages on the new storage and HTTP alerts", () => {
    expect(routeOf('alertname=DelayWatchdog', 'severity=none', 'component=alerting')).toBe('deadmans-switch');
    const config = parse(readFileSync('alertmanager/alertmanager.yml', 'utf8'));
    const watchdog = config.route.routes.find((r: { receiver: string }) => r.receiver === 'deadmans-switch');
    expect(watchdog.repeat_interval).toBe('1m');
    for (const alertname of [
      'DelayPredictionsLost',
      'DelayPredictionLogWriteFailing',
      'DelayPredictionLogStalled',
      'DelayHttpServerErrors',
      'DelayMetricsAbsent',
    ])
      expect(routeOf(`alertname=${alertname}`, 'severity=critical')).toBe('oncall-pager');
    expect(routeOf('alertname=DelayPredictionsRefused', 'severity=warning', 'component=storage')).toBe(
      'team-channel',
    );
  });

  it('never sends a warning without rollback="true" to the rollback webhook', () => {
    expect(routeOf('alertname=Anything', 'severity=warning')).not.toContain('rollback-webhook');
  });

  it('keeps a rollback post within the webhook body limit (max_alerts), and every rollback alert routes there', () => {
    const config = parse(readFileSync('alertmanager/alertmanager.yml', 'utf8'));
    const webhook = config.receivers.find((r: { name: string }) => r.name === 'rollback-webhook')
      .webhook_configs[0];
    // A truncated post still holds a rollback alert; 100 alerts with long annotations stay far below the limit.
    expect(webhook.max_alerts).toBeGreaterThan(0);
    expect(webhook.max_alerts * 8 * 1024).toBeLessThan(WEBHOOK_BODY_LIMIT_BYTES);
    for (const alertname of Object.keys(ROLLBACK_SIGNALS))
      expect(routeOf(`alertname=${alertname}`, 'severity=critical', 'rollback=true', `job=${JOB}`)).toBe(
        'rollback-webhook,oncall-pager',
      );
  });
});

describe('Alertmanager keeps deployments apart', () => {
  const config = parse(readFileSync('alertmanager/alertmanager.yml', 'utf8'));

  it('groups by job and namespace on every route that groups, here and on Kubernetes', () => {
    const grouping = [config.route, ...config.route.routes].filter((r) => r.group_by);
    expect(grouping.length).toBeGreaterThan(0);
    for (const route of grouping)
      expect(route.group_by, route.receiver).toEqual(expect.arrayContaining([...DEPLOYMENT_LABELS]));
    const kubernetes = parse(
      readFileSync('deploy/kubernetes/base/monitoring/alertmanager-config.yaml', 'utf8'),
    );
    expect(kubernetes.spec.route.groupBy).toEqual(config.route.group_by);
  });

  it('inhibits a warning only by a critical alert of the same deployment', () => {
    for (const rule of config.inhibit_rules)
      expect(rule.equal).toEqual(expect.arrayContaining([...DEPLOYMENT_LABELS]));
  });

  it('sends to the rollback webhook only the alerts of the job Prometheus scrapes this service as', () => {
    const rollback = config.route.routes.find((r: { receiver: string }) => r.receiver === 'rollback-webhook');
    expect(rollback.matchers).toEqual(['rollback="true"', `job="${JOB}"`]);
  });
});
