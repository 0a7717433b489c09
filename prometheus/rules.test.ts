import { execFile } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { ROLLBACK_SIGNALS, THRESHOLDS as T } from '../service/domain/rollback-policy.js';
import { DRIFT_FEATURES } from '../service/drift/drift-monitor.js';
import { WEATHER_FEATURES } from '../service/features/booking-features.js';
import { monitoringBinaries } from '../service/test-support/monitoring.js';
import {
  CAUSES,
  DEPLOYMENT_LABELS,
  headingAnchors,
  panelPath,
  RULE_FILES,
  runbookBaseUrl,
  SEVERITIES,
} from './rule-conventions.js';
import {
  errorRatio,
  readSlos,
  renderSloRules,
  SLI_WINDOWS,
  SLO_PERIOD,
  SLO_RULES_FILE,
} from './slo-generate.js';

const hasPromtool = monitoringBinaries('promtool');

/** promtool in prometheus/, asynchronously: its unit tests take a minute, which must not stall the test worker. */
const promtool = (...args: string[]) =>
  new Promise<{ status: number | null; stdout: string; stderr: string }>((resolve) => {
    execFile('promtool', args, { cwd: 'prometheus', encoding: 'utf8' }, (err, stdout, stderr) =>
      resolve({ status: err ? (typeof err.code === 'number' ? err.code : null) : 0, stdout, stderr }),
    );
  });

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
const TEST_FILES = readdirSync('prometheus/tests')
  .filter((f) => f.endsWith('.test.yml'))
  .map((f) => `prometheus/tests/${f}`);

describe.skipIf(!hasPromtool)('Prometheus configuration (promtool)', () => {
  it('checks the config and every rule file', async () => {
    const run = await promtool('check', 'config', 'prometheus.yml');
    expect(run.status, run.stdout + run.stderr).toBe(0);
  });

  // About 200 cases, a day of history in some: promtool takes about 45 s alone, more on a busy machine.
  it('passes every rule unit test of prometheus/tests/', async () => {
    expect(TEST_FILES.length).toBeGreaterThanOrEqual(5);
    for (const file of TEST_FILES) {
      const run = await promtool('test', 'rules', file.replace(/^prometheus\//, ''));
      expect(run.status, `${file}\n${run.stdout}${run.stderr}`).toBe(0);
    }
  }, 300_000);
});

describe('rules and their documents', () => {
  const alerts = [...rules('alerts.yml'), ...rules('slo.yml').filter((r) => r.alert)];
  const recorded = [...rules('recording.yml'), ...rules('slo.yml').filter((r) => r.record)];
  const runbook = readFileSync('docs/runbook.md', 'utf8');
  const packageJson = JSON.parse(readFileSync('package.json', 'utf8')) as { repository: { url: string } };
  const catalogue = readFileSync('docs/metrics.md', 'utf8');

  it('gives every alert a severity that says who is told, a summary and a description', () => {
    for (const alert of alerts) {
      expect(SEVERITIES, alert.alert).toContain(alert.labels?.severity);
      expect(alert.annotations?.summary, alert.alert).toBeTruthy();
      expect(alert.annotations?.description, alert.alert).toBeTruthy();
    }
    // A rollback that works is the machines doing their job: a ticket. Its failure pages (DelayRollback*).
    for (const alert of alerts.filter((a) => a.labels?.rollback === 'true'))
      expect(alert.labels?.severity, alert.alert).toBe('ticket');
    const severity = (name: string) => alerts.filter((a) => a.alert === name).map((a) => a.labels?.severity);
    for (const name of [
      'DelayRollbackNotWritten',
      'DelayRollbackIneffective',
      'DelayModelNotLoaded',
      'DelayFeedbackStopped',
      'DelayTrafficStopped',
      'DelayAuthFailures',
    ])
      expect(severity(name), name).toEqual(['page']);
    for (const name of ['DelayFeatureDrift', 'DelayTrafficUnlikeTraining'])
      expect(severity(name), name).toEqual(['ticket']);
    for (const name of ['DelayAvailabilityBudgetBurn', 'DelayLatencyBudgetBurn'])
      expect(severity(name).sort(), name).toEqual(['page', 'ticket']);
    expect(severity('DelayWatchdog')).toEqual(['info']);
  });

  it('names causes and dependents from one vocabulary, every dependent with an alert that is its cause', () => {
    const causes = new Set(alerts.map((a) => a.labels?.cause).filter(Boolean));
    for (const alert of alerts) {
      if (alert.labels?.cause) expect(CAUSES, alert.alert).toContain(alert.labels.cause);
      if (alert.labels?.depends_on) expect([...causes], alert.alert).toContain(alert.labels.depends_on);
      expect(
        alert.labels?.cause && alert.labels?.depends_on,
        `${alert.alert}: both cause and depends_on`,
      ).toBeFalsy();
    }
    expect([...causes].sort()).toEqual([...CAUSES].sort());
  });

  it('links every alert to the Grafana panel that confirms it: a provisioned dashboard uid and one of its panels', () => {
    const dashboards = readdirSync('grafana/dashboards')
      .filter((f) => f.endsWith('.json'))
      .map((f) => JSON.parse(readFileSync(`grafana/dashboards/${f}`, 'utf8')) as Dashboard);
    const panels = new Set(dashboards.flatMap((d) => panelsOf(d.panels).map((p) => panelPath(d, p.id))));
    for (const alert of alerts) {
      const link = alert.annotations?.dashboard ?? '';
      expect(panels, `${alert.alert}: ${link}`).toContain(link);
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

  it('loads the rule files in one order everywhere, and evaluates the unit tests in file order, every group named', () => {
    const config = parse(readFileSync('prometheus/prometheus.yml', 'utf8')) as { rule_files: string[] };
    expect(config.rule_files.map((f) => `prometheus/${f}`)).toEqual([...RULE_FILES]);
    for (const file of TEST_FILES) {
      const test = parse(readFileSync(file, 'utf8')) as { rule_files: string[]; group_eval_order: string[] };
      const loaded = test.rule_files.map((f) => `prometheus/${f.replace(/^\.\.\//, '')}`);
      expect(
        RULE_FILES.filter((f) => loaded.includes(f)),
        file,
      ).toEqual(loaded);
      const groups = loaded.flatMap((f) =>
        (parse(readFileSync(f, 'utf8')) as { groups: { name: string }[] }).groups.map((g) => g.name),
      );
      expect(test.group_eval_order, file).toEqual(groups);
    }
  });

  it('has a promtool test for every alert', () => {
    const tests = TEST_FILES.map((f) => readFileSync(f, 'utf8')).join('\n');
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
      'ALERTS',
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
          /^(le|endpoint|assignment|arm|model_version|feature|bin|instance|job|namespace|status|outcome|reason|source|variant|alertstate|rollback)$/.test(
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

interface Panel {
  id: number;
  panels?: Panel[];
}
interface Dashboard {
  uid: string;
  title: string;
  panels: Panel[];
}
const panelsOf = (panels: Panel[] = []): Panel[] => panels.flatMap((p) => [p, ...panelsOf(p.panels)]);

describe('the SLOs of slo/*.yaml', () => {
  it(`are rendered in ${SLO_RULES_FILE} as npm run slo:generate writes them now`, () => {
    expect(readFileSync(SLO_RULES_FILE, 'utf8')).toBe(renderSloRules());
  });

  it('record every SLI at every window the burn-rate alerts read', () => {
    const recorded = new Set(rules('slo.yml').map((r) => r.record));
    for (const slo of readSlos().flatMap((f) => f.slos))
      for (const window of SLI_WINDOWS) expect(recorded, slo.name).toContain(errorRatio(slo.name, window));
  });

  it(`are judged over ${SLO_PERIOD}, which compose's Prometheus keeps`, () => {
    const compose = parse(readFileSync('docker-compose.yml', 'utf8')) as {
      services: { prometheus: { command: string[] } };
    };
    const days = (d: string) => Number(/^(\d+)d$/.exec(d)?.[1]);
    const retention = compose.services.prometheus.command
      .find((c) => c.startsWith('--storage.tsdb.retention.time='))
      ?.split('=')[1];
    expect(days(retention ?? '')).toBeGreaterThanOrEqual(days(SLO_PERIOD));
  });

  it("hold the plan's figures: 99.9% available, 99% of single predictions within the latency threshold", () => {
    const slos = new Map(readSlos().flatMap((f) => f.slos.map((s) => [s.name, s])));
    expect(slos.get('prediction-availability')?.objective).toBe(99.9);
    const latency = slos.get('prediction-latency');
    expect(latency?.objective).toBe(99);
    expect(latency?.sli.events.error_query).toContain(`le="${T.latencyP95}"`);
  });
});
