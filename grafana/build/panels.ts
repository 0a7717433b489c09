import type { Builder, Dataquery } from '@grafana/grafana-foundation-sdk/cog';
import * as common from '@grafana/grafana-foundation-sdk/common';
import * as dashboard from '@grafana/grafana-foundation-sdk/dashboard';
import { DataqueryBuilder, PromQueryFormat } from '@grafana/grafana-foundation-sdk/prometheus';
import { PanelBuilder as StatBuilder } from '@grafana/grafana-foundation-sdk/stat';
import { PanelBuilder as TableBuilder } from '@grafana/grafana-foundation-sdk/table';
import { PanelBuilder as TimeseriesBuilder } from '@grafana/grafana-foundation-sdk/timeseries';
import { POSTGRES, PROMETHEUS } from './definitions.js';
import { withMatchers } from './promql.js';

/*
 * The pieces every board is made of: datasource references through the boards' datasource variables, queries
 * filtered to the deployment the `job` and `namespace` variables select, and panels with the options the boards
 * share (stats reduce to the last value, legends shown, threshold lines drawn).
 */

/** How Grafana names a variable's value in a field: `${name}`. */
export const variable = (name: string) => `\${${name}}`;

export const PROMETHEUS_REF = { type: PROMETHEUS.type, uid: variable('datasource') };
export const POSTGRES_REF = { type: POSTGRES.type, uid: variable('postgres') };

/** The matchers that keep one deployment: every Prometheus query and annotation carries them. */
export const DEPLOYMENT_MATCHERS = 'job="$job", namespace="$namespace"';

export type Query = Builder<Dataquery>;

/**
 * A Prometheus query of the deployment the variables select. `table`: one instant row per series, for tables;
 * `alsoUnfiltered`: a selector added with `or` as it is, for a series that belongs to no deployment.
 */
export function prom(
  refId: string,
  expr: string,
  legend = '',
  options: { table?: boolean; alsoUnfiltered?: string } = {},
): Query {
  const filtered = withMatchers(expr, DEPLOYMENT_MATCHERS);
  const query = new DataqueryBuilder()
    .refId(refId)
    .datasource(PROMETHEUS_REF)
    .expr(options.alsoUnfiltered ? `${filtered} or ${options.alsoUnfiltered}` : filtered)
    .legendFormat(legend);
  return options.table ? query.instant().format(PromQueryFormat.Table) : query;
}

/** A raw SQL query of the Postgres datasource (the SDK has no builder for it), as Grafana's SQL editor saves it. */
export interface SqlQuery extends Dataquery {
  refId: string;
  datasource: typeof POSTGRES_REF;
  format: 'table';
  rawQuery: true;
  editorMode: 'code';
  rawSql: string;
}
export const sql = (refId: string, rawSql: string): Builder<Dataquery> => ({
  build: (): SqlQuery => ({ refId, datasource: POSTGRES_REF, ...sqlTarget(rawSql) }),
});

/** The query part of an SQL annotation: the annotation names the datasource. */
export const sqlTarget = (rawSql: string) => ({
  format: 'table' as const,
  rawQuery: true as const,
  editorMode: 'code' as const,
  rawSql: rawSql.replace(/\s+/g, ' ').trim(),
  _implementsDataqueryVariant() {},
});

/** Colours by value: `base` below the first step, then each step's colour from its value up. */
export function steps(base: string, ...from: [value: number, color: string][]) {
  return new dashboard.ThresholdsConfigBuilder()
    .mode(dashboard.ThresholdsMode.Absolute)
    .steps([{ value: null, color: base }, ...from.map(([value, color]) => ({ value, color }))]);
}

const fixedColor = (color: string) =>
  new dashboard.FieldColorBuilder().mode(dashboard.FieldColorModeId.Fixed).fixedColor(color);

/** The overrides a stat colours one query's values by: `steps` for it, the rest keeps the panel's colour. */
export const colouredBy = (thresholds: ReturnType<typeof steps>): dashboard.DynamicConfigValue[] => [
  { id: 'thresholds', value: thresholds.build() },
  { id: 'color', value: { mode: dashboard.FieldColorModeId.Thresholds } },
];

interface Placed {
  id: number;
  title: string;
  description: string;
  w: number;
  h: number;
}

/** A stat of the last value of each series, named, in a neutral colour unless `thresholds` colour it. */
export function stat(p: Placed & { queries: Query[]; unit?: string; thresholds?: ReturnType<typeof steps> }) {
  const panel = new StatBuilder()
    .id(p.id)
    .title(p.title)
    .description(p.description)
    .datasource(datasourceOf(p.queries))
    .gridPos({ x: 0, y: 0, w: p.w, h: p.h })
    .reduceOptions(new common.ReduceDataOptionsBuilder().calcs(['lastNotNull']).values(false))
    .graphMode(common.BigValueGraphMode.None)
    .textMode(common.BigValueTextMode.ValueAndName)
    .colorMode(common.BigValueColorMode.Value);
  for (const q of p.queries) panel.withTarget(q);
  if (p.unit) panel.unit(p.unit);
  if (p.thresholds) panel.thresholds(p.thresholds).colorScheme(thresholdColours());
  else panel.colorScheme(fixedColor('text'));
  return panel;
}

const thresholdColours = () => new dashboard.FieldColorBuilder().mode(dashboard.FieldColorModeId.Thresholds);

/** A time series with its legend; `lines` draws the thresholds as lines, the bounds of the alerts it shows. */
export function timeseries(
  p: Placed & { queries: Query[]; unit?: string; lines?: ReturnType<typeof steps> },
) {
  const panel = new TimeseriesBuilder()
    .id(p.id)
    .title(p.title)
    .datasource(datasourceOf(p.queries))
    .gridPos({ x: 0, y: 0, w: p.w, h: p.h })
    .legend(
      new common.VizLegendOptionsBuilder()
        .showLegend(true)
        .displayMode(common.LegendDisplayMode.List)
        .placement(common.LegendPlacement.Bottom)
        .calcs([]),
    )
    .tooltip(
      new common.VizTooltipOptionsBuilder().mode(common.TooltipDisplayMode.Multi).sort(common.SortOrder.None),
    );
  if (p.description) panel.description(p.description);
  for (const q of p.queries) panel.withTarget(q);
  if (p.unit) panel.unit(p.unit);
  if (p.lines)
    panel
      .thresholds(p.lines)
      .thresholdsStyle(
        new common.GraphThresholdsStyleConfigBuilder().mode(common.GraphThresholdsStyleMode.Line),
      );
  return panel;
}

export function table(p: Placed & { queries: Query[]; unit?: string }) {
  const panel = new TableBuilder()
    .id(p.id)
    .title(p.title)
    .datasource(datasourceOf(p.queries))
    .gridPos({ x: 0, y: 0, w: p.w, h: p.h });
  if (p.description) panel.description(p.description);
  for (const q of p.queries) panel.withTarget(q);
  if (p.unit) panel.unit(p.unit);
  return panel;
}

export const row = (id: number, title: string) => new dashboard.RowBuilder(title).id(id);

function datasourceOf(queries: Query[]) {
  const refs = new Set(queries.map((q) => (q.build() as { datasource?: { uid: string } }).datasource?.uid));
  if (refs.size !== 1) throw new Error('a panel reads one datasource');
  return refs.has(POSTGRES_REF.uid) ? POSTGRES_REF : PROMETHEUS_REF;
}
