import { readdirSync, readFileSync } from 'node:fs';

/** The provisioned dashboards and their Prometheus queries, for the tests that check and run them. */
export interface Panel {
  title: string;
  datasource: { uid: string };
  targets: { expr?: string; rawSql?: string; datasource: { uid: string } }[];
}
export const dashboards = readdirSync('grafana/dashboards')
  .filter((f) => f.endsWith('.json'))
  .map((f) => ({ file: f, json: JSON.parse(readFileSync(`grafana/dashboards/${f}`, 'utf8')) }));

export const prometheusQueries = () =>
  dashboards.flatMap(({ json }) =>
    (json.panels as Panel[]).flatMap((p) =>
      p.targets.filter((t) => t.expr).map((t) => ({ panel: p.title, expr: t.expr as string })),
    ),
  );
