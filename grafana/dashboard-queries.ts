import { readdirSync, readFileSync } from 'node:fs';

/** The provisioned dashboards and their queries, for the tests that check and run them. */
export interface Target {
  refId: string;
  expr?: string;
  rawSql?: string;
  legendFormat?: string;
  datasource: { type: string; uid: string };
}
export interface Panel {
  id: number;
  type: string;
  title: string;
  description?: string;
  datasource: { type: string; uid: string };
  targets: Target[];
  options?: Record<string, unknown>;
  fieldConfig: {
    defaults: {
      thresholds?: { mode: string; steps: { color: string; value: number | null }[] };
      custom?: { thresholdsStyle?: { mode: string } };
    };
    overrides: { matcher: { id: string; options: string }; properties: { id: string; value: unknown }[] }[];
  };
}
/** A row: a heading across the board, its panels laid out below it (collapsed rows hold them in `panels`). */
export interface Row {
  id: number;
  type: 'row';
  title: string;
  panels: Panel[];
}
export interface Variable {
  name: string;
  type: string;
  query?: string;
  includeAll?: boolean;
  allValue?: string;
  current?: { text: string; value: string };
  datasource?: { type: string; uid: string };
}
export interface Annotation {
  name: string;
  datasource: { type: string; uid: string };
  expr?: string;
  tagKeys?: string;
  target?: { rawSql?: string };
}
export interface DashboardJson {
  uid: string;
  title: string;
  refresh: string;
  panels: (Panel | Row)[];
  links: { title: string; type: string; url: string; includeVars: boolean; keepTime: boolean }[];
  templating: { list: Variable[] };
  annotations: { list: Annotation[] };
}

export const dashboards = readdirSync('grafana/dashboards')
  .filter((f) => f.endsWith('.json'))
  .map((f) => ({
    file: f,
    json: JSON.parse(readFileSync(`grafana/dashboards/${f}`, 'utf8')) as DashboardJson,
  }));

const isRow = (p: Panel | Row): p is Row => p.type === 'row';

/** A board's panels that show data, rows' panels included, rows themselves left out. */
export const panelsOf = (json: DashboardJson): Panel[] =>
  json.panels.flatMap((p) => (isRow(p) ? p.panels : [p]));

/**
 * A Prometheus query as Grafana sends it when the board opens: a variable with an All value (`$model_version`) at
 * All, one without (the deployment's `$job` and `$namespace`) at the value it opens on. A variable the board does
 * not define is an error, not a query that silently matches nothing.
 */
export function interpolatePromQL(expr: string, dashboard: DashboardJson): string {
  return expr.replace(/\$\{?(\w+)\}?/g, (_, name: string) => {
    const variable = dashboard.templating.list.find((v) => v.name === name);
    const value = variable?.includeAll ? variable.allValue : variable?.current?.value;
    if (value === undefined)
      throw new Error(`${dashboard.uid}: $${name} has no All or current value: ${expr}`);
    return value;
  });
}

/**
 * A Postgres query as Grafana's SQL datasource expands it for a time range: `$__timeFilter(column)` becomes
 * `column BETWEEN 'from' AND 'to'`. Any other macro or variable is an error here, so the test sees it.
 */
export function interpolateSql(rawSql: string, range: { from: Date; to: Date }): string {
  const expanded = rawSql.replace(
    /\$__timeFilter\(([^)]+)\)/g,
    (_, column: string) =>
      `${column.trim()} BETWEEN '${range.from.toISOString()}' AND '${range.to.toISOString()}'`,
  );
  const left = expanded.match(/\$\{?\w+/);
  if (left) throw new Error(`unsupported macro or variable ${left[0]} in: ${rawSql}`);
  return expanded;
}

/** Every panel query on Prometheus, interpolated as Grafana would send it. */
export const prometheusQueries = () =>
  dashboards.flatMap(({ json }) =>
    panelsOf(json).flatMap((p) =>
      p.targets
        .filter((t) => t.expr)
        .map((t) => ({ panel: p.title, expr: interpolatePromQL(t.expr as string, json) })),
    ),
  );

/** Every Postgres query, panels' and annotations', raw (with Grafana's macros). */
export const postgresQueries = () =>
  dashboards.flatMap(({ file, json }) => [
    ...panelsOf(json).flatMap((p) =>
      p.targets.filter((t) => t.rawSql).map((t) => ({ file, name: p.title, rawSql: t.rawSql as string })),
    ),
    ...json.annotations.list
      .filter((a) => a.target?.rawSql)
      .map((a) => ({ file, name: `annotation ${a.name}`, rawSql: a.target?.rawSql as string })),
  ]);

const DURATION = /^(\d+)(s|m|h|d)$/;
const UNIT_WORDS: Record<string, string> = { s: 's', min: 'm', h: 'h', d: 'd', days: 'd', hours: 'h' };

/**
 * The windows a title or legend names, as PromQL durations: "MAE, 30 min" -> 30m, "(1 h)" -> 1h, "last 7 days" -> 7d.
 * "5 minutes" is a quantity (a threshold, a unit), not a window: windows are written min, h, d, or "last N days".
 */
export function namedWindows(text: string): string[] {
  const windows = [...text.matchAll(/(?:^|[\s(,])(\d+)\s?(s|min|h|d)\b/g)].map(
    (m) => `${m[1]}${UNIT_WORDS[m[2] as string]}`,
  );
  for (const m of text.matchAll(/\blast (\d+) (days|hours)\b/g))
    windows.push(`${m[1]}${UNIT_WORDS[m[2] as string]}`);
  return windows;
}

/**
 * The windows a PromQL expression reads: range selectors ([5m]) and the window a recording rule's name ends with
 * (level:metric:mean5m, :p95_5m, :30m).
 */
export function queryWindows(expr: string): string[] {
  const ranges = [...expr.matchAll(/\[(\d+[smhd])\]/g)].map((m) => m[1] as string);
  const rules = [...expr.matchAll(/[a-z_]*:[a-z0-9_]+:[a-z0-9_]*?(\d+[smhd])\b/g)].map((m) => m[1] as string);
  return [...new Set([...ranges, ...rules])].filter((w) => DURATION.test(w));
}
