import { spawnSync } from 'node:child_process';
import { cpSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { sql } from 'drizzle-orm';
import { describe, expect, it } from 'vitest';
import { parse, stringify } from 'yaml';
import { feedback, flagChanges, predictions } from '../db/schema.js';
import { freshPostgres, postgresAvailable } from '../service/test-support/databases.js';
import { tempDir } from '../service/test-support/harness.js';
import { monitoringBinaries } from '../service/test-support/monitoring.js';
import { BOARDS, DEFAULT_DEPLOYMENT, uidOf } from './build/board.js';
import { DASHBOARDS_DIR, renderDashboards, staleFiles } from './build/generate.js';
import { withMatchers } from './build/promql.js';
import {
  type DashboardJson,
  dashboards,
  interpolatePromQL,
  interpolateSql,
  namedWindows,
  type Panel,
  panelsOf,
  postgresQueries,
  prometheusQueries,
  queryWindows,
} from './dashboard-queries.js';
import { typeErrors } from './dashboard-typecheck.js';

/*
 * The boards are generated (grafana/build, npm run dashboards): what they are made of comes from the rules, the
 * SLOs and the rollback policy. These tests hold what the generator cannot promise by itself: the committed JSON is
 * its output, Grafana's schema and promtool accept it, every metric and rule it reads exists, every query keeps one
 * deployment, Postgres answers every SQL query, titles name the windows queries read, and the overview answers
 * the plan's monitoring questions. prometheus/e2e.test.ts runs every Prometheus query against a real Prometheus.
 */

const catalogue = readFileSync('docs/metrics.md', 'utf8');
const ruleFiles = ['prometheus/rules/recording.yml', 'prometheus/rules/slo.yml']
  .map((f) => readFileSync(f, 'utf8'))
  .join('\n');

const hasPostgres = await postgresAvailable();
const hasPromtool = monitoringBinaries('promtool');
const byUid = (uid: string) => {
  const found = dashboards.find((d) => d.json.uid === uid);
  if (!found) throw new Error(`no dashboard ${uid}`);
  return found.json;
};
const overview = byUid(uidOf(DEFAULT_DEPLOYMENT, 'overview'));
const panel = (json: DashboardJson, title: string) => {
  const found = panelsOf(json).find((p) => p.title === title);
  if (!found) throw new Error(`${json.uid} has no panel ${title}`);
  return found;
};

/** The catalogued metrics whose labels column names model_version. */
const modelVersionMetrics = catalogue
  .split('\n')
  .filter((row) => row.startsWith('| `') && (row.split('|')[4] ?? '').includes('`model_version`'))
  .map((row) => (row.match(/^\| `([a-z0-9_]+)`/) as RegExpMatchArray)[1] as string);

/** Metric selectors of a PromQL expression with their label matchers: recording rules, ALERTS and up included. */
const selectors = (expr: string) =>
  [
    ...expr
      // Label lists name labels, not series.
      .replace(/\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, '')
      .matchAll(/([a-z_]*:[a-z0-9_]+:[a-z0-9_]+|\b(?:delay|http)_[a-z0-9_]+|\bALERTS\b|\bup\b)(\{[^}]*\})?/g),
  ].map((m) => ({ name: m[1] as string, matchers: m[2] ?? '' }));
const carriesModelVersion = (name: string) =>
  name.includes(':')
    ? /(^|_)model_version$/.test(name.split(':')[0] as string)
    : modelVersionMetrics.includes(name.replace(/_(bucket|count|sum)$/, ''));

/** Every Prometheus expression of a board as written: panels, annotations, query variables. */
const promExpressions = (json: DashboardJson) => [
  ...panelsOf(json).flatMap((p) =>
    p.targets.flatMap((t) => (t.expr ? [{ where: p.title, expr: t.expr }] : [])),
  ),
  ...json.annotations.list.flatMap((a) => (a.expr ? [{ where: `annotation ${a.name}`, expr: a.expr }] : [])),
  ...json.templating.list.flatMap((v) =>
    v.type === 'query' && v.query ? [{ where: `variable ${v.name}`, expr: v.query }] : [],
  ),
];

/** Mismatches between the windows a panel's title or a legend names and the windows its queries read. */
function windowMismatches(p: Pick<Panel, 'title' | 'targets'>): string[] {
  const titled = namedWindows(p.title);
  return p.targets.flatMap((t) => {
    if (!t.expr) return [];
    const read = queryWindows(t.expr);
    const named = [...titled, ...namedWindows(t.legendFormat ?? '')];
    if (named.length === 0 || (read.every((w) => named.includes(w)) && read.length > 0)) return [];
    return [
      `${p.title} / ${t.legendFormat ?? t.refId}: names ${named.join(', ')}, reads ${read.join(', ') || 'none'}`,
    ];
  });
}

/**
 * The questions of the plan's monitoring section (../shared/seeds: MAE and R² over 24 h, mean prediction time, ML
 * error rate, anomalies, flag status) and an operator's four (is ML serving, at what share, is it healthy, did it
 * roll back), each with the overview panel that answers it, what that panel reads, and the words of its
 * description that say so to a reader of the JSON.
 */
const PLAN_QUESTIONS: { question: string; panel: string; reads: string[]; says: string }[] = [
  {
    question: 'Is ML serving, and at what share?',
    panel: 'ML share: served, and what the flag asks',
    reads: ['source:delay_predictions:rate5m{', 'source="ml"', 'delay_rollout_ml_percentage{'],
    says: 'is ML serving, at what share',
  },
  {
    question: 'Is it healthy?',
    panel: 'Instances up, of expected',
    reads: ['sum(up{', 'count(up{'],
    says: 'is it healthy',
  },
  {
    question: 'Is it healthy? (the SLOs)',
    panel: 'Error budget left, 30 d',
    reads: ['http_server_request_duration_count{', 'delay_prediction_duration_bucket{'],
    says: 'is it healthy',
  },
  {
    question: 'Is it healthy? (server errors)',
    panel: '5xx ratio, 5 min',
    reads: [':delay_prediction_availability_errors:ratio_rate5m{', ':delay_http_server_errors:ratio_rate5m{'],
    says: 'is it healthy',
  },
  {
    question: 'Did it roll back?',
    panel: 'Rollbacks, 24 h',
    reads: ['delay_rollout_rollbacks_total{'],
    says: 'did it roll back',
  },
  {
    question: "Did it roll back? (the last one's signal and actor)",
    panel: 'Last rollback: signal, actor and alert',
    reads: ["labels->>'signal' as signal", 'actor', "action = 'rollback'"],
    says: 'did it roll back',
  },
  {
    question: 'MAE over 24 h',
    panel: 'MAE, 24 h (minutes)',
    reads: ['arm_model_version:delay_feedback_mae_minutes:24h{'],
    says: 'MAE over 24 h',
  },
  {
    question: 'R² over 24 h',
    panel: 'R², 24 h',
    reads: ['arm_model_version:delay_feedback_r2:24h{'],
    says: 'R² over 24 h',
  },
  {
    question: 'Mean prediction time',
    panel: 'Prediction latency, 5 min: p95 and mean',
    reads: ['rate(delay_prediction_duration_sum{', 'rate(delay_prediction_duration_count{'],
    says: 'mean prediction time',
  },
  {
    question: 'ML error rate',
    panel: 'ML fallback and error ratio, 5 min',
    reads: [':delay_ml_error:ratio_rate5m{'],
    says: 'ML error rate',
  },
  {
    question: 'Anomalies',
    panel: 'Anomalies: predictions off by more than 5 minutes',
    reads: ['abs(delay_minutes - actual_delay_minutes) > 5'],
    says: 'anomalies',
  },
  {
    question: 'Flag status, per variant, canary included',
    panel: 'Served share per flag variant, 1 h',
    reads: ['sum by (variant) (increase(delay_predictions_total{'],
    says: 'flag status per variant',
  },
  {
    question: 'Flag status: refused flag files',
    panel: 'Flag files refused, 1 h',
    reads: ['delay_flags_config_errors_total{'],
    says: 'flag status',
  },
];

/**
 * The shipped boards and a broken copy of the Service board, compiled in one program (the compiler takes seconds):
 * the copy shows that the check fails on what it should.
 */
function brokenServiceDashboard() {
  const broken = structuredClone(byUid(uidOf(DEFAULT_DEPLOYMENT, 'service'))) as unknown as {
    panels: unknown[];
  };
  const [wrongType, badStyle, noDatasource, misspelled] = broken.panels as {
    type?: string;
    datasource?: unknown;
    fieldConfig: { defaults: Record<string, unknown> };
  }[];
  if (!wrongType || !badStyle || !noDatasource || !misspelled)
    throw new Error('the Service board lost panels');
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
  it('are committed exactly as npm run dashboards writes them', () => {
    expect(staleFiles()).toEqual([]);
    expect(dashboards.map((d) => d.file).sort()).toEqual(
      Object.keys(BOARDS)
        .map((k) => `${k}.json`)
        .sort(),
    );
  });

  it('names the files npm run dashboards -- --check fails on: changed, missing, and no longer built', () => {
    const dir = tempDir('dashboards-check-');
    cpSync(DASHBOARDS_DIR, dir, { recursive: true });
    writeFileSync(join(dir, 'service.json'), '{}\n');
    rmSync(join(dir, 'weather.json'));
    writeFileSync(join(dir, 'retired.json'), '{}\n');
    expect(staleFiles(dir)).toEqual(['retired.json', 'service.json', 'weather.json']);
    rmSync(dir, { recursive: true });
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
    const unknown: string[] = [];
    for (const { panel: title, expr } of prometheusQueries())
      for (const name of expr
        .replace(/\{[^}]*\}/g, '')
        .match(/[a-z_]*:[a-z0-9_]+:[a-z0-9_]+|delay_[a-z0-9_]+|http_[a-z_]+/g) ?? []) {
        const base = name.replace(/_(bucket|count|sum|total)$/, '');
        if (!(ruleFiles.includes(`record: ${name}`) || catalogue.includes(name) || catalogue.includes(base)))
          unknown.push(`${title}: ${name}`);
      }
    expect(unknown).toEqual([]);
  });

  it('keeps one deployment in every Prometheus query, annotation and variable: $job and $namespace', () => {
    const unfiltered: string[] = [];
    for (const { json } of dashboards)
      for (const { where, expr } of promExpressions(json))
        for (const { name, matchers } of selectors(expr)) {
          // DelayWatchdog belongs to no deployment: it shows that Prometheus evaluates the rules.
          if (matchers.includes('alertname="DelayWatchdog"')) continue;
          // The deployment variables list the deployments.
          if (where === 'variable job' || where === 'variable namespace') continue;
          if (!(matchers.includes('job="$job"') && matchers.includes('namespace="$namespace"')))
            unfiltered.push(`${json.uid} ${where}: ${name}${matchers}`);
        }
    expect(unfiltered).toEqual([]);
    for (const { json } of dashboards)
      expect(
        json.templating.list.filter((v) => v.name === 'job' || v.name === 'namespace').map((v) => v.name),
        json.uid,
      ).toEqual(['job', 'namespace']);
  });

  it('adds the deployment matchers to every selector, and only to selectors', () => {
    const m = 'job="$job"';
    expect(
      withMatchers(
        'sum by (job, le) (rate(a_bucket{x="1",y=~"a|b"}[5m] offset 1d)) / ignoring (v) group_left sum(b:c:d) or vector(0)',
        m,
      ),
    ).toBe(
      'sum by (job, le) (rate(a_bucket{job="$job", x="1",y=~"a|b"}[5m] offset 1d)) / ignoring (v) group_left sum(b:c:d{job="$job"}) or vector(0)',
    );
    expect(withMatchers('count(up == 0) or histogram_quantile(0.95, x) > bool 1e-4', m)).toBe(
      'count(up{job="$job"} == 0) or histogram_quantile(0.95, x{job="$job"}) > bool 1e-4',
    );
    expect(withMatchers('sum without (instance) (x) and on (a) {__name__="y"}', m)).toBe(
      'sum without (instance) (x{job="$job"}) and on (a) {job="$job", __name__="y"}',
    );
    expect(withMatchers('avg_over_time((a:b:c > 0)[30d:5m])', m)).toBe(
      'avg_over_time((a:b:c{job="$job"} > 0)[30d:5m])',
    );
    expect(withMatchers('label_replace(x, "dst", "$1", "src", "(.*)")', m)).toBe(
      'label_replace(x{job="$job"}, "dst", "$1", "src", "(.*)")',
    );
  });

  it('gives another deployment uids, titles and links of its own, and refuses a uid Grafana would not take', () => {
    const other = Object.values(
      renderDashboards({ name: 'eu', job: 'delay-prediction', namespace: 'eu' }),
    ).map((t) => JSON.parse(t) as DashboardJson);
    const uids = other.map((d) => d.uid);
    for (const d of other) {
      expect(dashboards.map((b) => b.json.uid)).not.toContain(d.uid);
      expect(dashboards.map((b) => b.json.title)).not.toContain(d.title);
      for (const link of d.links) expect(uids).toContain(link.url.replace('/d/', ''));
    }
    expect(() =>
      renderDashboards({ name: 'a-deployment-name-far-too-long', job: 'j', namespace: '' }),
    ).toThrow(/at most 40/);
  });

  it('links the overview to every detailed board, and every detailed board back, keeping deployment and time', () => {
    const uids = dashboards.map((d) => d.json.uid);
    expect(overview.links.map((l) => l.url).sort()).toEqual(
      uids
        .filter((u) => u !== overview.uid)
        .map((u) => `/d/${u}`)
        .sort(),
    );
    for (const { json } of dashboards.filter((d) => d.json.uid !== overview.uid))
      expect(json.links.map((l) => l.url)).toEqual([`/d/${overview.uid}`]);
    for (const { json } of dashboards)
      for (const link of json.links)
        expect(link, json.uid).toMatchObject({ includeVars: true, keepTime: true });
  });

  it("is Grafana's home page in compose: the overview, from the provisioned folder", () => {
    const compose = parse(readFileSync('docker-compose.yml', 'utf8'));
    const provider = parse(readFileSync('grafana/provisioning/dashboards/dashboards.yml', 'utf8'))
      .providers[0];
    const home = compose.services.grafana.environment.GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH as string;
    expect(home).toBe(`${provider.options.path}/overview.json`);
    expect(compose.services.grafana.volumes).toContain(`./${DASHBOARDS_DIR}:${provider.options.path}:ro`);
  });

  it("answers each of the plan's monitoring questions with an overview panel that says so", () => {
    for (const { question, panel: title, reads, says } of PLAN_QUESTIONS) {
      const p = panel(overview, title);
      expect(['stat', 'table'], question).toContain(p.type);
      const queries = p.targets.map((t) => t.expr ?? t.rawSql).join('\n');
      for (const part of reads) expect(queries, `${question}: ${title}`).toContain(part);
      expect(p.description?.toLowerCase(), question).toContain(says.toLowerCase());
    }
  });

  it('sets the business figures of ML beside the rules’ shadow answer on the same bookings, over 24 h', () => {
    const business = panelsOf(overview).filter((p) =>
      p.targets.some((t) => t.expr?.includes('delay_business_')),
    );
    expect(business.map((p) => p.title)).toEqual([
      'Late bookings anticipated, 24 h',
      'False alarms among flagged, 24 h',
      'Buffer unused per booking, 24 h (minutes)',
      'Buffer shortfall per booking, 24 h (minutes)',
      'Reassignment candidates, 24 h',
      'Buffer cost, 24 h',
    ]);
    for (const p of business)
      for (const t of p.targets)
        if (t.expr?.startsWith('arm_model_version:'))
          expect(t.expr, p.title).toContain('arm=~"ml|heuristic_shadow"');
  });

  it('filters every model panel by $model_version, a label_values variable on a catalogued metric', () => {
    const json = byUid(uidOf(DEFAULT_DEPLOYMENT, 'model-quality'));
    const variable = json.templating.list.find((v) => v.name === 'model_version');
    expect(variable).toMatchObject({ type: 'query', includeAll: true, allValue: '.*' });
    const [, metric] = (variable?.query ?? '').match(/^label_values\((\w+)\{[^}]*\}, model_version\)$/) ?? [];
    expect(modelVersionMetrics).toContain(metric);
    const filtered = new Set<string>();
    for (const p of panelsOf(json))
      for (const target of p.targets)
        for (const { name, matchers } of selectors(target.expr ?? '')) {
          if (!carriesModelVersion(name)) {
            expect(matchers, `${p.title}: ${name} has no model_version label`).not.toMatch(/model_version/);
            continue;
          }
          expect(matchers, `${p.title}: ${name}`).toContain('model_version=~"$model_version"');
          filtered.add(p.title);
        }
    expect(filtered.size).toBe(10);
  });

  it('names in titles and legends the windows the queries read', () => {
    for (const { json } of dashboards)
      for (const p of panelsOf(json)) {
        expect(windowMismatches(p)).toEqual([]);
        // A Postgres panel follows the time picker: a fixed window in its title would be false.
        if (p.targets.some((t) => t.rawSql)) expect(namedWindows(p.title), p.title).toEqual([]);
      }
  });

  it('tells a title window from the query window it does not match', () => {
    const target = { refId: 'A', datasource: { type: 'prometheus', uid: 'p' } };
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

  it('bounds every Postgres query by the time picker', () => {
    const queries = postgresQueries();
    expect(queries.length).toBeGreaterThan(0);
    for (const { file, name, rawSql } of queries) {
      expect(rawSql, `${file}: ${name}`).toMatch(/\$__timeFilter\(/);
      expect(rawSql, `${file}: ${name}`).not.toMatch(/now\(\)/);
    }
  });

  it.skipIf(!hasPostgres)(
    'answers every Postgres query, panels and annotations, from the migrated schema, within the time range',
    async () => {
      const database = await freshPostgres();
      try {
        const now = Date.now();
        await database.db.insert(flagChanges).values([
          {
            at: new Date(now - 120_000),
            actor: 'alertmanager',
            action: 'rollback',
            flag: 'delay-model',
            previousWeight: 20,
            newWeight: 0,
            modelVersion: 'gbt-v2',
            alertName: 'DelayModelFarFromRules',
            labels: { alertname: 'DelayModelFarFromRules', signal: 'label_free' },
          },
          {
            at: new Date(now - 60_000),
            actor: 'alertmanager',
            action: 'rollback',
            flag: 'delay-model',
            previousWeight: 50,
            newWeight: 0,
            modelVersion: 'gbt-v2',
            alertName: 'DelayMlErrorRatioHigh',
            labels: { alertname: 'DelayMlErrorRatioHigh', signal: 'errors' },
          },
          {
            at: new Date(now - 2 * 86_400_000),
            actor: 'cli',
            action: 'enable',
            flag: 'delay-model',
            newWeight: 10,
          },
        ]);
        const served = (id: string, delay: number) => ({
          bookingId: id,
          predictedAt: new Date(now - 600_000),
          endpoint: 'single',
          source: 'ml',
          variant: 'gbt-v2',
          modelVersion: 'gbt-v2',
          delayMinutes: delay,
          intervalLow: delay - 2,
          intervalHigh: delay + 2,
          shadowHeuristicDelay: delay + 1,
          features: [],
          weatherSource: 'default',
          latencyMs: 3,
        });
        await database.db.insert(predictions).values([served('b-near', 4), served('b-far', 3)]);
        await database.db.insert(feedback).values([
          { bookingId: 'b-near', actualDelayMinutes: 5 },
          { bookingId: 'b-far', actualDelayMinutes: 12 },
        ]);
        const range = { from: new Date(now - 6 * 3_600_000), to: new Date(now) };
        const run = async (rawSql: string) =>
          (await database.db.execute(sql.raw(interpolateSql(rawSql, range)))) as unknown as Record<
            string,
            unknown
          >[];
        const empty: string[] = [];
        for (const { file, name, rawSql } of postgresQueries())
          if ((await run(rawSql)).length === 0) empty.push(`${file}: ${name}`);
        expect(empty).toEqual([]);

        const sqlOf = (title: string) => panel(overview, title).targets[0]?.rawSql as string;
        expect(await run(sqlOf('Last rollback: signal, actor and alert'))).toMatchObject([
          {
            signal: 'errors',
            actor: 'alertmanager',
            alert_name: 'DelayMlErrorRatioHigh',
            ml_percentage_before: 50,
          },
        ]);
        // Counts are bigint: postgres-js reads them as strings, Grafana as numbers.
        expect(await run(sqlOf('Anomalies: predictions off by more than 5 minutes'))).toMatchObject([
          { anomalies: '1', with_feedback: '2' },
        ]);
        const annotation = postgresQueries().find(
          (q) => q.file === 'rollout.json' && q.name === 'annotation Flag changes',
        );
        const rows = await run(annotation?.rawSql as string);
        expect(rows.map((r) => [r.text, r.tags])).toEqual([
          [
            'alertmanager rollback 20% -> 0% gbt-v2 DelayModelFarFromRules',
            'rollback,DelayModelFarFromRules',
          ],
          ['alertmanager rollback 50% -> 0% gbt-v2 DelayMlErrorRatioHigh', 'rollback,DelayMlErrorRatioHigh'],
        ]);
      } finally {
        await database.close();
      }
    },
  );
});
