import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { ROLLBACK_SIGNALS, THRESHOLDS as T } from '../service/domain/rollback-policy.js';
import { DRIFT_FEATURES } from '../service/drift/drift-monitor.js';
import { WEATHER_FEATURES } from '../service/features/booking-features.js';
import { monitoringBinaries } from '../service/test-support/monitoring.js';
import { DEPLOYMENT_LABELS, headingAnchors, runbookBaseUrl } from './rule-conventions.js';

const hasPromtool = monitoringBinaries('promtool');

const promtool = (...args: string[]) => spawnSync('promtool', args, { cwd: 'prometheus', encoding: 'utf8' });

interface Rule {
  alert?: string;
  record?: string;
  expr: string;
  for?: string;
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

  // 150 alert cases take promtool about 20 s alone, more on a busy machine.
  it('passes the alert and recording rule unit tests', () => {
    for (const file of ['tests/alerts.test.yml', 'tests/recording.test.yml']) {
      const run = promtool('test', 'rules', file);
      expect(run.status, run.stdout + run.stderr).toBe(0);
    }
  }, 180_000);
});

describe('rules and their documents', () => {
  const alerts = rules('alerts.yml');
  const recorded = rules('recording.yml');
  const runbook = readFileSync('docs/runbook.md', 'utf8');
  const packageJson = JSON.parse(readFileSync('package.json', 'utf8')) as { repository: { url: string } };
  const catalogue = readFileSync('docs/metrics.md', 'utf8');

  it('gives every alert a severity, a summary and a description', () => {
    for (const alert of alerts) {
      // severity none: the watchdog alone, which notifies a dead man's switch and never a person.
      expect(alert.alert === 'DelayWatchdog' ? ['none'] : ['critical', 'warning'], alert.alert).toContain(
        alert.labels?.severity,
      );
      expect(alert.annotations?.summary, alert.alert).toBeTruthy();
      expect(alert.annotations?.description, alert.alert).toBeTruthy();
    }
  });

  it("links every alert to its own section of the runbook: the base URL, '#', an anchor of docs/runbook.md", () => {
    const base = runbookBaseUrl(packageJson.repository);
    expect(new URL(base).protocol).toBe('https:');
    const anchors = headingAnchors(runbook);
    for (const alert of alerts) {
      const url = alert.annotations?.runbook_url ?? '';
      expect(url, alert.alert).toBe(`${base}#${(alert.alert as string).toLowerCase()}`);
      expect(anchors, `${alert.alert}: no heading for ${url}`).toContain(url.slice(base.length + 1));
    }
  });

  it('keeps job and namespace through every aggregation and join, so two deployments never mix', () => {
    const labels = (list: string) => list.split(',').map((l) => l.trim());
    const keeps = (list: string) => DEPLOYMENT_LABELS.every((l) => labels(list).includes(l));
    const drops = (list: string) => DEPLOYMENT_LABELS.some((l) => labels(list).includes(l));
    const aggregation =
      /\b(sum|min|max|avg|count|group|stddev|stdvar|topk|bottomk|quantile|count_values)\s*(?:(by|without)\s*\(([^)]*)\))?\s*\(/g;
    for (const rule of [...recorded, ...alerts]) {
      const name = rule.alert ?? rule.record;
      for (const [text, , clause, list = ''] of rule.expr.matchAll(aggregation)) {
        const kept = clause === 'by' ? keeps(list) : clause === 'without' && !drops(list);
        expect(kept, `${name}: ${text}`).toBe(true);
      }
      for (const [text, clause, list = ''] of rule.expr.matchAll(/\b(on|ignoring)\s*\(([^)]*)\)/g)) {
        const kept = clause === 'on' ? keeps(list) : !drops(list);
        expect(kept, `${name}: ${text}`).toBe(true);
      }
    }
  });

  it('evaluates the unit tests in file order, every group named', () => {
    const groups = ['recording.yml', 'alerts.yml'].flatMap((f) =>
      (parse(readFileSync(`prometheus/rules/${f}`, 'utf8')) as { groups: { name: string }[] }).groups.map(
        (g) => g.name,
      ),
    );
    const order = (file: string) => parse(readFileSync(file, 'utf8')).group_eval_order;
    expect(order('prometheus/tests/alerts.test.yml')).toEqual(groups);
    expect(order('prometheus/tests/recording.test.yml')).toEqual(
      groups.filter((g) => g !== 'delay-prediction-alerts'),
    );
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
      'sqrt',
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
      'min_over_time',
      'absent',
      'offset',
      'unless',
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
          /^(le|endpoint|assignment|arm|model_version|feature|bin|instance|job|namespace|status|outcome|reason|source|variant)$/.test(
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

describe('the rules use the thresholds of service/domain/rollback-policy.ts', () => {
  const alerts = new Map(rules('alerts.yml').map((r) => [r.alert as string, r]));
  const expr = (name: string) => (alerts.get(name)?.expr ?? '').replace(/\s+/g, ' ');
  const f = T.pairedFast;
  const s = T.pairedSlow;
  const g = T.shadowDeparture;
  const e = T.fallbackRatio;
  const weather = WEATHER_FEATURES.filter((f) => DRIFT_FEATURES.includes(f)).join('|');
  const expected: Record<string, { parts: string[]; for?: string }> = {
    DelayModelLosingToRulesFast: {
      parts: [
        `mae_minutes:${f.window}{arm="ml"} > ${T.maeCritical}`,
        `zscore${f.window} > ${T.pairedZ}`,
        `mean${f.resetWindow} > 0`,
        `scored:increase${f.window}{arm="ml"} >= ${f.minSamples}`,
      ],
    },
    DelayModelLosingToRules: {
      parts: [
        `mean${s.window} > 0`,
        `zscore${s.window} > ${T.pairedZ}`,
        `mean${s.resetWindow} > 0`,
        `scored:increase${s.window}{arm="ml"} >= ${s.minSamples}`,
      ],
      for: s.for,
    },
    DelayModelFarFromRules: {
      parts: [
        `departure_minutes:abs_mean${g.window} > ${g.minutes}`,
        `departure_minutes:abs_mean${g.resetWindow} > ${g.minutes}`,
        `departure_compared:increase${g.window} >= ${g.minSamples}`,
      ],
    },
    DelayMlErrorRatioHigh: {
      parts: [
        `ratio_rate${e.window} > ${e.long}`,
        `ratio_rate${e.resetWindow} > ${e.short}`,
        `increase${e.window} >= ${e.minSamples}`,
      ],
      for: e.for,
    },
    DelayModelLatencyHigh: {
      parts: [
        `) > ${T.mlAddedLatencyP95.seconds} and`,
        `rate5m{endpoint="single",assignment="heuristic"} >= ${T.mlAddedLatencyP95.minRate}`,
      ],
      for: T.mlAddedLatencyP95.for,
    },
    DelayModelMaeDegraded: { parts: [`mae_minutes:1h{arm="ml"} > ${T.maeTarget}`] },
    DelayPredictionLatencyHigh: { parts: [`p95_5m{endpoint="single"} > ${T.latencyP95}`] },
    DelayFeatureDrift: {
      parts: [`psi:5m{feature!~"${weather}"} > ${T.psi.drift}`, `>= ${T.psi.minObservations}`],
      for: T.psi.driftFor,
    },
    DelayFeatureDriftSevere: {
      parts: [
        // The weather features drift is computed for: weather never rolls back.
        `psi:5m{feature!~"${weather}"} > ${T.psi.severe}`,
        `>= ${T.psi.severeMinObservations}`,
        `and on (job, namespace, feature) min_over_time(feature:delay_feature_psi:5m[${T.psi.fittedWithin}] offset 20m) < ${T.psi.drift}`,
      ],
      for: T.psi.severeFor,
    },
    DelayTrafficUnlikeTraining: {
      parts: [
        `psi:5m{feature!~"${weather}"} > ${T.psi.severe}`,
        `>= ${T.psi.severeMinObservations}`,
        `unless on (job, namespace, feature) min_over_time(feature:delay_feature_psi:5m[${T.psi.fittedWithin}] offset 20m) < ${T.psi.drift}`,
      ],
      for: T.psi.severeFor,
    },
  };

  it.each(Object.entries(expected))('%s', (name, { parts, for: wait }) => {
    for (const part of parts) expect(expr(name)).toContain(part);
    if (wait) expect(alerts.get(name)?.for).toBe(wait);
  });

  it('names the signal of every rollback alert, and only those roll back', () => {
    const rollback = [...alerts.values()].filter((a) => a.labels?.rollback === 'true');
    expect(rollback.map((a) => a.alert).sort()).toEqual(Object.keys(ROLLBACK_SIGNALS).sort());
    for (const a of rollback)
      expect(a.labels?.signal, a.alert).toBe(ROLLBACK_SIGNALS[a.alert as keyof typeof ROLLBACK_SIGNALS]);
  });
});
