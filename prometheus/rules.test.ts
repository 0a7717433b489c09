import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { monitoringBinaries } from '../service/test-support/monitoring.js';

const hasPromtool = monitoringBinaries('promtool');

const promtool = (...args: string[]) => spawnSync('promtool', args, { cwd: 'prometheus', encoding: 'utf8' });

interface Rule {
  alert?: string;
  record?: string;
  expr: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
}
const rules = (file: string): Rule[] =>
  (parse(readFileSync(`prometheus/rules/${file}`, 'utf8')) as { groups: { rules: Rule[] }[] }).groups.flatMap(
    (g) => g.rules,
  );

describe.skipIf(!hasPromtool)('Prometheus configuration (promtool)', () => {
  it('checks the config and both rule files', () => {
    const run = promtool('check', 'config', 'prometheus.yml');
    expect(run.status, run.stdout + run.stderr).toBe(0);
  });

  it('passes the alert and recording rule unit tests', () => {
    for (const file of ['tests/alerts.test.yml', 'tests/recording.test.yml']) {
      const run = promtool('test', 'rules', file);
      expect(run.status, run.stdout + run.stderr).toBe(0);
    }
  });
});

describe('rules and their documents', () => {
  const alerts = rules('alerts.yml');
  const recorded = rules('recording.yml');
  const runbook = readFileSync('docs/runbook.md', 'utf8');
  const catalogue = readFileSync('docs/metrics.md', 'utf8');

  it('gives every alert a severity, a summary, a description and a runbook anchor that exists', () => {
    const anchors = new Set([...runbook.matchAll(/^## (\S+)/gm)].map((m) => (m[1] as string).toLowerCase()));
    for (const alert of alerts) {
      expect(['critical', 'warning'], alert.alert).toContain(alert.labels?.severity);
      expect(alert.annotations?.summary, alert.alert).toBeTruthy();
      expect(alert.annotations?.description, alert.alert).toBeTruthy();
      const anchor = alert.annotations?.runbook_url?.split('#')[1] ?? '';
      expect(anchors, `${alert.alert} -> #${anchor}`).toContain(anchor);
    }
  });

  it('has a promtool test for every alert', () => {
    const tests = readFileSync('prometheus/tests/alerts.test.yml', 'utf8');
    for (const alert of alerts) expect(tests, alert.alert).toContain(`alertname: ${alert.alert}`);
  });

  it('names only metrics of the catalogue (docs/metrics.md), or its own recording rules', () => {
    const own = new Set(recorded.map((r) => r.record));
    const functions = new Set([
      'sum',
      'rate',
      'increase',
      'histogram_quantile',
      'clamp_min',
      'ln',
      'max',
      'min',
      'vector',
      'by',
      'on',
      'and',
      'or',
      'group_left',
      'without',
    ]);
    for (const rule of [...alerts, ...recorded]) {
      const names =
        rule.expr
          .replace(/\{[^}]*\}/g, '')
          .replace(/\[[^\]]*\]/g, '')
          .match(/[a-zA-Z_:][a-zA-Z0-9_:]*/g) ?? [];
      for (const name of names) {
        if (
          functions.has(name) ||
          own.has(name) ||
          /^(le|endpoint|arm|model_version|feature|bin|instance|job|status|outcome|reason|source|variant)$/.test(
            name,
          )
        )
          continue;
        if (name === 'up') continue;
        const base = name.replace(/_(bucket|count|sum|total)$/, '');
        expect(
          catalogue.includes(name) || catalogue.includes(base),
          `${rule.alert ?? rule.record}: ${name}`,
        ).toBe(true);
      }
    }
  });
});
