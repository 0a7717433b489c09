import { spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { monitoringBinaries } from '../service/test-support/monitoring.js';

const hasAmtool = monitoringBinaries('amtool');

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
      ),
    ).toBe('rollback-webhook,oncall-pager');
    expect(routeOf('alertname=DelayMlErrorRatioHigh', 'severity=critical', 'rollback=true')).toBe(
      'rollback-webhook,oncall-pager',
    );
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

  it('never sends a warning without rollback="true" to the rollback webhook', () => {
    expect(routeOf('alertname=Anything', 'severity=warning')).not.toContain('rollback-webhook');
  });
});
