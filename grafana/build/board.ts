import type { Builder } from '@grafana/grafana-foundation-sdk/cog';
import * as dashboard from '@grafana/grafana-foundation-sdk/dashboard';
import { POSTGRES, PROMETHEUS, ROLLBACK_ALERTS, SCRAPE_JOB } from './definitions.js';
import { POSTGRES_REF, PROMETHEUS_REF, prom, sqlTarget } from './panels.js';

/*
 * A board's frame: uid and title of its deployment, the datasource and deployment variables, the rollback and flag
 * change annotations, and the links between the overview and the detailed boards.
 */

/**
 * Which deployment a set of boards shows. `name` makes uids and titles distinct where one Grafana shows several
 * deployments (empty for the repository's own); `job` and `namespace` are what the boards open on.
 */
export interface Deployment {
  name: string;
  job: string;
  namespace: string;
}

/** The repository's boards: compose, and the Kubernetes base. No namespace in compose; the first one on Kubernetes. */
export const DEFAULT_DEPLOYMENT: Deployment = { name: '', job: SCRAPE_JOB, namespace: '' };

/** Every board: its file (grafana/dashboards/<key>.json) and the last part of its uid and title. */
export const BOARDS = {
  overview: 'Overview',
  rollout: 'Rollout',
  'model-quality': 'Model quality',
  service: 'Service',
  drift: 'Drift',
  weather: 'Weather',
  predictions: 'Recent predictions',
} as const;
export type BoardKey = keyof typeof BOARDS;

/** Grafana refuses uids longer than this. */
const MAX_UID = 40;

export function uidOf(deployment: Deployment, key: BoardKey): string {
  const uid = `delay-${deployment.name ? `${deployment.name}-` : ''}${key}`;
  if (uid.length > MAX_UID || !/^[a-zA-Z0-9_-]+$/.test(uid))
    throw new Error(`dashboard uid ${uid}: at most ${MAX_UID} letters, digits, - and _`);
  return uid;
}
export const titleOf = (deployment: Deployment, key: BoardKey) =>
  `Delay prediction${deployment.name ? ` (${deployment.name})` : ''} / ${BOARDS[key]}`;

/** The metric whose label values list the deployments: every replica exports it from its start. */
const DEPLOYMENT_METRIC = 'delay_rollout_ml_percentage';

function variables(deployment: Deployment, postgres: boolean) {
  const list: Builder<dashboard.VariableModel>[] = [
    new dashboard.DatasourceVariableBuilder('datasource')
      .label(PROMETHEUS.name)
      .type(PROMETHEUS.type)
      .current({ text: PROMETHEUS.name, value: PROMETHEUS.uid }),
  ];
  if (postgres)
    list.push(
      new dashboard.DatasourceVariableBuilder('postgres')
        .label(POSTGRES.name)
        .type(POSTGRES.type)
        .current({ text: POSTGRES.name, value: POSTGRES.uid }),
    );
  list.push(
    new dashboard.QueryVariableBuilder('job')
      .label('Job')
      .description('The scrape job of the deployment shown: every Prometheus query keeps this job only.')
      .datasource(PROMETHEUS_REF)
      .query(`label_values(${DEPLOYMENT_METRIC}, job)`)
      .current({ text: deployment.job, value: deployment.job })
      .refresh(dashboard.VariableRefresh.OnDashboardLoad)
      .sort(dashboard.VariableSort.AlphabeticalAsc),
    new dashboard.QueryVariableBuilder('namespace')
      .label('Namespace')
      .description(
        'The Kubernetes namespace of the deployment shown (none in compose, whose series carry no namespace).',
      )
      .datasource(PROMETHEUS_REF)
      .query(`label_values(${DEPLOYMENT_METRIC}{job="$job"}, namespace)`)
      .current({ text: deployment.namespace || 'None', value: deployment.namespace })
      .refresh(dashboard.VariableRefresh.OnDashboardLoad)
      .sort(dashboard.VariableSort.AlphabeticalAsc),
  );
  return list;
}

/** Rollbacks from the firing rollback alerts (tagged with labels every one carries), flag changes from the audit. */
function annotations() {
  const tags = ['alertname', 'signal'];
  for (const rule of ROLLBACK_ALERTS)
    if (!rule.labels?.signal) throw new Error(`rollback alert ${rule.alert} has no signal label`);
  return [
    new dashboard.AnnotationQueryBuilder()
      .name('Rollbacks')
      .enable(true)
      .iconColor('red')
      .datasource(PROMETHEUS_REF)
      .expr(
        (prom('Anno', 'ALERTS{rollback="true", alertstate="firing"}').build() as unknown as { expr: string })
          .expr,
      )
      .step('15s')
      .titleFormat('Rollback alert {{alertname}}')
      .textFormat('signal: {{signal}}')
      .tagKeys(tags.join(','))
      .useValueForTime(false),
    new dashboard.AnnotationQueryBuilder()
      .name('Flag changes')
      .enable(true)
      .iconColor('blue')
      .datasource(POSTGRES_REF)
      .target({
        build: () => ({
          refId: 'Anno',
          ...sqlTarget(
            `select at as time,
             concat_ws(' ', actor, action, case when new_weight is not null
               then coalesce(previous_weight::text || '% -> ', '') || new_weight::text || '%' end,
               model_version, alert_name, reason) as text,
             concat_ws(',', action, alert_name) as tags
           from flag_changes where $__timeFilter(at) order by at`,
          ),
        }),
      }),
  ];
}

function links(deployment: Deployment, key: BoardKey) {
  const targets =
    key === 'overview' ? (Object.keys(BOARDS) as BoardKey[]).filter((k) => k !== key) : ['overview'];
  return (targets as BoardKey[]).map((target) =>
    new dashboard.DashboardLinkBuilder(BOARDS[target])
      .type(dashboard.DashboardLinkType.Link)
      .url(`/d/${uidOf(deployment, target)}`)
      .icon(target === 'overview' ? 'dashboard' : 'external link')
      .tooltip(
        target === 'overview' ? 'The overview of this deployment' : `${BOARDS[target]}, this deployment`,
      )
      .includeVars(true)
      .keepTime(true),
  );
}

type PanelLike = Builder<dashboard.Panel> | dashboard.RowBuilder;

export interface BoardOptions {
  tags: string[];
  /** The default time range's start (`now-6h`). */
  from: string;
  /** The board reads the audit or the prediction log (the Postgres datasource variable). */
  postgres: boolean;
  /** The rollback and flag change annotations. */
  annotated: boolean;
  variables?: Builder<dashboard.VariableModel>[];
}

export function board(deployment: Deployment, key: BoardKey, options: BoardOptions, panels: PanelLike[]) {
  const builder = new dashboard.DashboardBuilder(titleOf(deployment, key))
    .uid(uidOf(deployment, key))
    .tags(['delay-prediction', ...options.tags])
    .timezone('utc')
    .refresh('30s')
    .time({ from: options.from, to: 'now' })
    .readonly()
    .variables([...variables(deployment, options.postgres), ...(options.variables ?? [])])
    .annotations(options.annotated ? annotations() : [])
    .links(links(deployment, key));
  for (const panel of panels)
    if (panel instanceof dashboard.RowBuilder) builder.withRow(panel);
    else builder.withPanel(panel);
  return normalise(builder.build());
}

/**
 * SDK defaults undone, each one Grafana's schema (@grafana/schema, grafana/dashboard-schema.ts) or older Grafana
 * versions read otherwise: links and annotation toggles placed `inControlsMenu` (folded into a menu from Grafana 12
 * on, where ops would not see them); the interval variable's `auto` fields on every variable; a table footer
 * that is not shown (an option newer table panels no longer have); no annotation list at all.
 */
function normalise(json: dashboard.Dashboard) {
  for (const link of json.links ?? []) delete link.placement;
  for (const annotation of json.annotations?.list ?? []) delete annotation.placement;
  json.annotations = { list: json.annotations?.list ?? [] };
  for (const variable of json.templating?.list ?? [])
    if (variable.type !== 'interval') {
      delete variable.auto;
      delete variable.auto_min;
      delete variable.auto_count;
    }
  for (const panel of json.panels ?? []) {
    const options = (panel as dashboard.Panel).options as { footer?: { show?: boolean } } | undefined;
    if (options?.footer && !options.footer.show) delete options.footer;
  }
  return json;
}
