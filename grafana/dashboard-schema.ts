import type {
  AnnotationQuery,
  Dashboard,
  DataQuery,
  DataSourceRef,
  FieldConfig,
  FieldConfigSource,
  Panel,
  RowPanel,
  VariableModel,
} from '@grafana/schema';
import type * as Stat from '@grafana/schema/dist/esm/raw/composable/stat/panelcfg/x/StatPanelCfg_types.gen';
import type * as Table from '@grafana/schema/dist/esm/raw/composable/table/panelcfg/x/TablePanelCfg_types.gen';
import type * as TimeSeries from '@grafana/schema/dist/esm/raw/composable/timeseries/panelcfg/x/TimeSeriesPanelCfg_types.gen';

/*
 * The dashboards' JSON as @grafana/schema types it, with each panel's options and field config typed by its
 * plugin's own schema. A dashboard file is checked by compiling it as an object literal against DashboardFile
 * (grafana/dashboard-typecheck.ts): an unknown panel type, a misspelled or mistyped field, an enum value Grafana does not have
 * are compile errors.
 */

/** The panel plugins the dashboards use: a panel of any other type is an error. */
interface PanelPlugins {
  stat: { options: Stat.Options; custom: Record<string, never> };
  table: { options: Table.Options; custom: Table.FieldConfig };
  timeseries: { options: TimeSeries.Options; custom: TimeSeries.FieldConfig };
}

/** JSON spells an enum member as its value: `"line"` for GraphThresholdsStyleMode.Line. */
type Json<T> = T extends string
  ? `${T}`
  : T extends number | boolean | null | undefined
    ? T
    : T extends readonly (infer U)[]
      ? Json<U>[]
      : T extends object
        ? { [K in keyof T]: Json<T[K]> }
        : T;

/** Queries: @grafana/schema has no Prometheus or SQL query types, so these name what the dashboards send. */
interface PrometheusQuery extends DataQuery {
  datasource: DataSourceRef;
  expr: string;
  legendFormat?: string;
  instant?: boolean;
  range?: boolean;
}
interface PostgresQuery extends DataQuery {
  datasource: DataSourceRef;
  rawSql: string;
  rawQuery: true;
  format: 'table' | 'time_series';
  editorMode: 'code' | 'builder';
}

/** Field config whose `custom` part is the plugin's, without the open index signature the veneer adds. */
type PluginFieldConfig<C> = Omit<FieldConfigSource, 'defaults'> & {
  defaults: Omit<FieldConfig, 'custom'> & { custom?: Partial<C> };
};

type PluginPanel<K extends keyof PanelPlugins> = Omit<
  Panel,
  'type' | 'options' | 'fieldConfig' | 'targets' | 'datasource'
> & {
  type: K;
  datasource: DataSourceRef;
  targets: (PrometheusQuery | PostgresQuery)[];
  options: Partial<PanelPlugins[K]['options']>;
  fieldConfig: PluginFieldConfig<PanelPlugins[K]['custom']>;
};

/**
 * Annotations: the Prometheus datasource reads its annotation query from these top-level fields (its
 * prepareAnnotation moves them into the target); SQL datasources read a regular query from `target`.
 */
type PrometheusAnnotation = Omit<AnnotationQuery, 'target' | 'datasource'> & {
  datasource: DataSourceRef;
  expr: string;
  step?: string;
  titleFormat?: string;
  textFormat?: string;
  tagKeys?: string;
  useValueForTime?: boolean;
};
type PostgresAnnotation = Omit<AnnotationQuery<Omit<PostgresQuery, 'datasource'>>, 'datasource'> & {
  datasource: DataSourceRef;
  target: Omit<PostgresQuery, 'datasource'>;
};

export type DashboardFile = Json<
  Omit<Dashboard, 'panels' | 'annotations' | 'templating'> & {
    panels: (
      | { [K in keyof PanelPlugins]: PluginPanel<K> }[keyof PanelPlugins]
      | (Omit<RowPanel, 'panels'> & { type: 'row'; panels: [] })
    )[];
    templating: { list: VariableModel[] };
    annotations: { list: (PrometheusAnnotation | PostgresAnnotation)[] };
  }
>;
