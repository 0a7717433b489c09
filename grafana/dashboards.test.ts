import { spawnSync } from 'node:child_process';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { sql } from 'drizzle-orm';
import { describe, expect, it } from 'vitest';
import { parse, stringify } from 'yaml';
import { flagChanges } from '../db/schema.js';
import { THRESHOLDS } from '../service/domain/rollback-policy.js';
import { SEGMENT_BAR } from '../service/retraining/segment-figures.js';
import { freshPostgres, postgresAvailable } from '../service/test-support/databases.js';
import { tempDir } from '../service/test-support/harness.js';
import { monitoringBinaries } from '../service/test-support/monitoring.js';
import {
  type DashboardJson,
  dashboards,
  interpolatePromQL,
  interpolateSql,
  namedWindows,
  type Panel,
  postgresQueries,
  prometheusQueries,
  queryWindows,
} from './dashboard-queries.js';
import { typeErrors } from './dashboard-typecheck.js';

const provisioned = parse(readFileSync('grafana/provisioning/datasources/datasources.yml', 'utf8'))
  .datasources as {
  uid: string;
  type: string;
  name: string;
}[];
const catalogue = readFileSync('docs/metrics.md', 'utf8');
const recording = readFileSync('prometheus/rules/recording.yml', 'utf8');
const alertRules = (
  parse(readFileSync('prometheus/rules/alerts.yml', 'utf8')).groups as {
    rules: { alert: string; expr: string; labels: Record<string, string> }[];
  }[]
).flatMap((g) => g.rules);

/** How a datasource reference names a dashboard variable: `${name}`. */
const variableRef = (name: string) => `\${${name}}`;

const hasPostgres = await postgresAvailable();
const hasPromtool = monitoringBinaries('promtool');
const byUid = (uid: string) => {
  const found = dashboards.find((d) => d.json.uid === uid);
  if (!found) throw new Error(`no dashboard ${uid}`);
  return found.json;
};

/** Where every datasource reference of a dashboard points: panels, targets, annotations, query variables. */
const datasourceRefs = (json: DashboardJson) => [
  ...json.panels.flatMap((p) => [
    { where: p.title, ref: p.datasource },
    ...p.targets.map((t) => ({ where: `${p.title} ${t.refId}`, ref: t.datasource })),
  ]),
  ...json.annotations.list.map((a) => ({ where: `annotation ${a.name}`, ref: a.datasource })),
  ...json.templating.list.flatMap((v) =>
    v.datasource ? [{ where: `variable ${v.name}`, ref: v.datasource }] : [],
  ),
];

/** The catalogued metrics whose labels column names model_version. */
const modelVersionMetrics = catalogue
  .split('\n')
  .filter((row) => row.startsWith('| `') && (row.split('|')[4] ?? '').includes('`model_version`'))
  .map((row) => (row.match(/^\| `([a-z0-9_]+)`/) as RegExpMatchArray)[1] as string);

/** Metric selectors of a PromQL expression with their label matchers, recording rules included. */
const selectors = (expr: string) =>
  [...expr.matchAll(/([a-z_]*:[a-z0-9_]+:[a-z0-9_]+|\b(?:delay|http)_[a-z0-9_]+)(\{[^}]*\})?/g)].map((m) => ({
    name: m[1] as string,
    matchers: m[2] ?? '',
  }));
const carriesModelVersion = (name: string) =>
  name.includes(':')
    ? /(^|_)model_version$/.test(name.split(':')[0] as string)
    : modelVersionMetrics.includes(name.replace(/_(bucket|count|sum)$/, ''));

/** Mismatches between the windows a panel's title or a legend names and the windows its queries read. */
function windowMismatches(panel: Pick<Panel, 'title' | 'targets'>): string[] {
  const titled = namedWindows(panel.title);
  return panel.targets.flatMap((t) => {
    if (!t.expr) return [];
    const read = queryWindows(t.expr);
    const named = [...titled, ...namedWindows(t.legendFormat ?? '')];
    if (named.length === 0 || (read.every((w) => named.includes(w)) && read.length > 0)) return [];
    return [
      `${panel.title} / ${t.legendFormat ?? t.refId}: names ${named.join(', ')}, reads ${read.join(', ') || 'none'}`,
    ];
  });
}

/**
 * Every threshold line and the alert it draws, with its value from the rollback policy: the test fails when a
 * panel's line differs from the policy, when the alert's rule no longer compares with that value, or when a
 * panel draws a line this table does not know.
 */
/** Lines at the trainer's segment bar, which no alert enforces: the same figures judged on feedback. */
const SEGMENT_BAR_LINES: { dashboard: string; panel: string; lines: number[] }[] = [
  {
    dashboard: 'delay-model-quality',
    panel: '80% interval coverage by segment, ML, 1 h',
    lines: [...SEGMENT_BAR.coverage],
  },
  {
    dashboard: 'delay-model-quality',
    panel: 'Mean bias by segment, ML, 1 h (minutes, predicted - actual)',
    lines: [-SEGMENT_BAR.maxAbsBias, SEGMENT_BAR.maxAbsBias],
  },
];
const THRESHOLD_LINES: { dashboard: string; panel: string; lines: { value: number; alert: string }[] }[] = [
  {
    dashboard: 'delay-model-quality',
    panel: 'MAE, 30 min (minutes)',
    lines: [
      { value: THRESHOLDS.maeTarget, alert: 'DelayModelMaeDegraded' },
      { value: THRESHOLDS.maeCritical, alert: 'DelayModelLosingToRulesFast' },
    ],
  },
  {
    dashboard: 'delay-model-quality',
    panel: 'MAE, 24 h (minutes)',
    lines: [
      { value: THRESHOLDS.maeTarget, alert: 'DelayModelMaeDegraded' },
      { value: THRESHOLDS.maeCritical, alert: 'DelayModelLosingToRulesFast' },
    ],
  },
  {
    dashboard: 'delay-model-quality',
    panel: 'ML minus its shadow heuristic, same bookings (minutes)',
    // The sign itself: above 0 the model is less accurate than the rules on the same bookings.
    lines: [{ value: 0, alert: 'DelayModelLosingToRules' }],
  },
  {
    dashboard: 'delay-model-quality',
    panel: 'ML departs from its usual gap to the rules, before feedback (minutes)',
    lines: [{ value: THRESHOLDS.shadowDeparture.minutes, alert: 'DelayModelFarFromRules' }],
  },
  {
    dashboard: 'delay-service',
    panel: 'Prediction latency p95 / p99',
    lines: [{ value: THRESHOLDS.latencyP95, alert: 'DelayPredictionLatencyHigh' }],
  },
  {
    dashboard: 'delay-service',
    panel: 'ML fallback ratio',
    lines: [
      { value: THRESHOLDS.fallbackRatio.long, alert: 'DelayMlErrorRatioHigh' },
      { value: THRESHOLDS.fallbackRatio.short, alert: 'DelayMlErrorRatioHigh' },
    ],
  },
  {
    dashboard: 'delay-drift',
    panel: 'PSI per feature (5 min)',
    lines: [
      { value: THRESHOLDS.psi.drift, alert: 'DelayFeatureDrift' },
      { value: THRESHOLDS.psi.severe, alert: 'DelayFeatureDriftSevere' },
    ],
  },
];

/**
 * The shipped dashboards and a broken copy of the Service dashboard, compiled in one program (the compiler takes
 * seconds): the copy shows that the check fails on what it should.
 */
function brokenServiceDashboard() {
  const broken = structuredClone(byUid('delay-service')) as unknown as { panels: unknown[] };
  const [wrongType, badStyle, noDatasource, misspelled] = broken.panels as {
    type?: string;
    datasource?: unknown;
    fieldConfig: { defaults: Record<string, unknown> };
  }[];
  if (!wrongType || !badStyle || !noDatasource || !misspelled)
    throw new Error('the Service dashboard lost panels');
  wrongType.type = 'timeserie';
  badStyle.fieldConfig.defaults.custom = { thresholdsStyle: { mode: 'lines' } };
  delete noDatasource.datasource;
  misspelled.fieldConfig.defaults.threshold = { mode: 'absolute', steps: [] };
  return broken;
}
let typeCheckErrors: string[] | undefined;
const typeCheck = () => {
  typeCheckErrors ??= typeErrors({
    ...Object.fromEntries(dashboards.map((d) => [d.file, d.json])),
    broken: brokenServiceDashboard(),
  });
  return {
    shipped: typeCheckErrors.filter((e) => !e.startsWith('broken:')),
    broken: typeCheckErrors.filter((e) => e.startsWith('broken:')).join('\n'),
  };
};

describe('Grafana dashboards', () => {
  it.skipIf(!hasPostgres)(
    'runs every Postgres query, panels and annotations, against the migrated schema, bounded by the time range',
    async () => {
      const database = await freshPostgres();
      try {
        const now = Date.now();
        await database.db.insert(flagChanges).values([
          {
            at: new Date(now - 60_000),
            actor: 'alertmanager',
            action: 'rollback',
            flag: 'delay-model',
            previousWeight: 50,
            newWeight: 0,
            modelVersion: 'gbt-v2',
            alertName: 'DelayMlErrorRatioHigh',
          },
          {
            at: new Date(now - 2 * 86_400_000),
            actor: 'cli',
            action: 'enable',
            flag: 'delay-model',
            newWeight: 10,
          },
        ]);
        const range = { from: new Date(now - 6 * 3_600_000), to: new Date(now) };
        const queries = postgresQueries();
        expect(queries.map((q) => q.name)).toEqual(
          expect.arrayContaining(['Latest predictions', 'Rollout changes and rollbacks (audit trail)']),
        );
        for (const { rawSql } of queries) await database.db.execute(sql.raw(interpolateSql(rawSql, range)));
        const annotation = queries.find((q) => q.name === 'annotation Flag changes');
        if (!annotation) throw new Error('no Flag changes annotation');
        const rows = (await database.db.execute(
          sql.raw(interpolateSql(annotation.rawSql, range)),
        )) as unknown as {
          time: Date;
          text: string;
          tags: string;
        }[];
        expect(rows.map((r) => [r.text, r.tags])).toEqual([
          ['alertmanager rollback 50% -> 0% gbt-v2 DelayMlErrorRatioHigh', 'rollback,DelayMlErrorRatioHigh'],
        ]);
      } finally {
        await database.close();
      }
    },
  );

  it('covers rollout, model quality, drift, service, weather and recent predictions', () => {
    expect(dashboards.map((d) => d.json.uid).sort()).toEqual(
      [
        'delay-drift',
        'delay-model-quality',
        'delay-predictions',
        'delay-rollout',
        'delay-service',
        'delay-weather',
      ].sort(),
    );
  });

  it('type-checks as @grafana/schema dashboards, each panel against its plugin schema', () => {
    expect(typeCheck().shipped).toEqual([]);
  });

  it('fails the type check on a wrong panel type, a bad field config or a missing datasource', () => {
    const errors = typeCheck().broken;
    expect(errors).toMatch(/"timeserie"/);
    expect(errors).toMatch(/"lines"/);
    expect(errors).toMatch(/'"threshold"' does not exist/);
    expect(errors).toMatch(/'datasource' is missing/);
  });

  it('refreshes every 30 s and reaches datasources only through datasource variables of provisioned types', () => {
    for (const { file, json } of dashboards) {
      expect(json.refresh, file).toBe('30s');
      const variables = json.templating.list.filter((v) => v.type === 'datasource');
      for (const variable of variables) {
        const match = provisioned.filter((d) => d.type === variable.query);
        expect(match.length, `${file}: $${variable.name} queries ${variable.query}`).toBeGreaterThan(0);
        const current = (variable as { current?: { value: string } }).current?.value;
        expect(
          match.map((d) => d.uid),
          `${file}: $${variable.name} defaults to a provisioned uid`,
        ).toContain(current);
      }
      const refs = datasourceRefs(json);
      for (const { where, ref } of refs) {
        const variable = variables.find((v) => ref.uid === variableRef(v.name));
        expect(variable, `${file}: ${where} uses ${ref.uid}`).toBeDefined();
        expect(ref.type, `${file}: ${where}`).toBe(variable?.query);
      }
      // No datasource variable without a user: each one is a selector on the dashboard.
      for (const variable of variables)
        expect(
          refs.some(({ ref }) => ref.uid === variableRef(variable.name)),
          `${file}: $${variable.name} unused`,
        ).toBe(true);
    }
  });

  it.skipIf(!hasPromtool)(
    'sends Prometheus only queries it parses, panels and annotations (promtool)',
    () => {
      const exprs = [
        ...prometheusQueries().map((q) => q.expr),
        ...dashboards.flatMap(({ json }) =>
          json.annotations.list.flatMap((a) => (a.expr ? [interpolatePromQL(a.expr, json)] : [])),
        ),
      ];
      // A rule file is the one input promtool parses PromQL from without a server.
      const dir = tempDir('dashboard-promql-');
      const file = join(dir, 'queries.yml');
      writeFileSync(
        file,
        stringify({
          groups: [
            { name: 'dashboards', rules: exprs.map((expr, i) => ({ record: `dashboard:query:${i}`, expr })) },
          ],
        }),
      );
      const run = spawnSync('promtool', ['check', 'rules', file], { encoding: 'utf8' });
      rmSync(dir, { recursive: true });
      expect(run.stdout + run.stderr).toContain(`SUCCESS: ${exprs.length} rules found`);
    },
  );

  it('queries only catalogued metrics and recording rules', () => {
    for (const { panel, expr } of prometheusQueries()) {
      for (const name of expr
        .replace(/\{[^}]*\}/g, '')
        .match(/[a-z_]*:[a-z0-9_]+:[a-z0-9_]+|delay_[a-z0-9_]+|http_[a-z_]+/g) ?? []) {
        const base = name.replace(/_(bucket|count|sum|total)$/, '');
        expect(
          recording.includes(`record: ${name}`) || catalogue.includes(name) || catalogue.includes(base),
          `${panel}: ${name}`,
        ).toBe(true);
      }
    }
  });

  it('filters every model panel by $model_version, a label_values variable on a catalogued metric', () => {
    const json = byUid('delay-model-quality');
    const variable = json.templating.list.find((v) => v.name === 'model_version');
    expect(variable).toMatchObject({
      type: 'query',
      includeAll: true,
      allValue: '.*',
      datasource: { uid: variableRef('datasource') },
    });
    const [, metric] = (variable?.query ?? '').match(/^label_values\((\w+), model_version\)$/) ?? [];
    expect(modelVersionMetrics).toContain(metric);
    const filtered: string[] = [];
    for (const panel of json.panels)
      for (const target of panel.targets)
        for (const { name, matchers } of selectors(target.expr ?? '')) {
          if (!carriesModelVersion(name)) {
            expect(matchers, `${panel.title}: ${name} has no model_version label`).not.toMatch(
              /model_version/,
            );
            continue;
          }
          expect(matchers, `${panel.title}: ${name}`).toContain('model_version=~"$model_version"');
          filtered.push(panel.title);
        }
    expect(new Set(filtered).size).toBe(9);
  });

  it('annotates rollbacks from the firing rollback alerts and flag changes from the audit table', () => {
    const rollbackAlerts = alertRules.filter((r) => r.labels.rollback === 'true');
    expect(rollbackAlerts.length).toBeGreaterThan(0);
    for (const uid of ['delay-model-quality', 'delay-rollout', 'delay-service', 'delay-drift']) {
      const list = byUid(uid).annotations.list;
      const rollbacks = list.find((a) => a.name === 'Rollbacks');
      expect(rollbacks?.expr, uid).toBe('ALERTS{rollback="true", alertstate="firing"}');
      // Tags come from labels every rollback alert carries (alertname is Prometheus's own).
      for (const key of (rollbacks?.tagKeys ?? '').split(',').filter((k) => k !== 'alertname'))
        for (const rule of rollbackAlerts) expect(rule.labels[key], `${rule.alert}: ${key}`).toBeDefined();
      expect(list.find((a) => a.name === 'Flag changes')?.target?.rawSql, uid).toMatch(
        /from flag_changes where \$__timeFilter\(at\)/,
      );
    }
  });

  it('draws the alert thresholds as lines, at the rollback policy values the rules compare with', () => {
    for (const { dashboard, panel: title, lines } of THRESHOLD_LINES) {
      const panel = byUid(dashboard).panels.find((p) => p.title === title);
      const where = `${dashboard}: ${title}`;
      expect(panel, where).toBeDefined();
      expect(panel?.fieldConfig.defaults.custom?.thresholdsStyle?.mode, where).toBe('line');
      const steps = panel?.fieldConfig.defaults.thresholds?.steps ?? [];
      expect(steps[0]?.value, `${where}: base step`).toBeNull();
      expect(steps.slice(1).map((s) => s.value)).toEqual(lines.map((l) => l.value).sort((a, b) => a - b));
      for (const { value, alert } of lines) {
        const rule = alertRules.find((r) => r.alert === alert);
        expect(rule?.expr, `${where}: ${alert}`).toMatch(
          new RegExp(`> ${String(value).replace('.', '\\.')}(?![\\d.])`),
        );
      }
    }
    for (const { dashboard, panel: title, lines } of SEGMENT_BAR_LINES) {
      const panel = byUid(dashboard).panels.find((p) => p.title === title);
      expect(panel?.fieldConfig.defaults.custom?.thresholdsStyle?.mode, title).toBe('line');
      const steps = panel?.fieldConfig.defaults.thresholds?.steps ?? [];
      expect(
        steps.slice(1).map((s) => s.value),
        title,
      ).toEqual(lines);
    }
    const known = new Set(
      [...THRESHOLD_LINES, ...SEGMENT_BAR_LINES].map((t) => `${t.dashboard}: ${t.panel}`),
    );
    for (const { json } of dashboards)
      for (const panel of json.panels)
        if (panel.fieldConfig.defaults.thresholds || panel.fieldConfig.defaults.custom?.thresholdsStyle)
          expect(known, `${json.uid}: ${panel.title} draws thresholds of no alert`).toContain(
            `${json.uid}: ${panel.title}`,
          );
  });

  it('bounds every Postgres query by the time picker', () => {
    const queries = postgresQueries();
    expect(queries.length).toBeGreaterThan(0);
    for (const { file, name, rawSql } of queries) {
      expect(rawSql, `${file}: ${name}`).toMatch(/\$__timeFilter\(/);
      expect(rawSql, `${file}: ${name}`).not.toMatch(/now\(\)/);
    }
  });

  it('names in titles and legends the windows the queries read', () => {
    for (const { json } of dashboards)
      for (const panel of json.panels) {
        expect(windowMismatches(panel)).toEqual([]);
        // A Postgres panel follows the time picker: a fixed window in its title would be false.
        if (panel.targets.some((t) => t.rawSql)) expect(namedWindows(panel.title), panel.title).toEqual([]);
      }
  });

  it('tells a title window from the query window it does not match', () => {
    const target = { refId: 'A', datasource: { type: 'prometheus', uid: variableRef('datasource') } };
    expect(
      windowMismatches({
        title: 'PSI per feature (10 min)',
        targets: [{ ...target, expr: 'feature:delay_feature_psi:5m' }],
      }),
    ).toHaveLength(1);
    expect(
      windowMismatches({
        title: 'Errors (1 h)',
        targets: [{ ...target, expr: 'sum(increase(delay_x_total[5m]))' }],
      }),
    ).toHaveLength(1);
    expect(
      windowMismatches({
        title: 'Gap',
        targets: [{ ...target, expr: 'm:x:mean1h', legendFormat: '{{v}} 5 min' }],
      }),
    ).toHaveLength(1);
    expect(
      windowMismatches({
        title: 'MAE, 30 min (minutes)',
        targets: [{ ...target, expr: 'a:b_minutes:30m{x="1"}' }],
      }),
    ).toEqual([]);
    expect(namedWindows('Anomalies: absolute error above 5 minutes, last 7 days')).toEqual(['7d']);
    expect(queryWindows('endpoint:delay_prediction_duration_seconds:p95_5m')).toEqual(['5m']);
  });
});
