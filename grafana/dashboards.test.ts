import { readFileSync } from 'node:fs';
import { sql } from 'drizzle-orm';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { freshPostgres, postgresAvailable } from '../service/test-support/databases.js';
import { dashboards, type Panel, prometheusQueries } from './dashboard-queries.js';

const datasourceUids = (
  parse(readFileSync('grafana/provisioning/datasources/datasources.yml', 'utf8')).datasources as {
    uid: string;
  }[]
).map((d) => d.uid);

const hasPostgres = await postgresAvailable();

describe('Grafana dashboards', () => {
  it.skipIf(!hasPostgres)('runs every Postgres panel query against the migrated schema', async () => {
    const database = await freshPostgres();
    try {
      const queries = dashboards.flatMap(({ json }) =>
        (json.panels as Panel[]).flatMap((p) =>
          p.targets.filter((t) => t.rawSql).map((t) => t.rawSql as string),
        ),
      );
      expect(queries.length).toBe(3);
      for (const query of queries) await database.db.execute(sql.raw(query));
    } finally {
      await database.close();
    }
  });

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

  it('refreshes every 30 s and uses only the provisioned datasources, by uid', () => {
    for (const { file, json } of dashboards) {
      expect(json.refresh, file).toBe('30s');
      for (const panel of json.panels as Panel[]) {
        expect(datasourceUids, `${file}: ${panel.title}`).toContain(panel.datasource.uid);
        for (const target of panel.targets) expect(datasourceUids).toContain(target.datasource.uid);
      }
    }
  });

  it('queries only catalogued metrics and recording rules', () => {
    const catalogue = readFileSync('docs/metrics.md', 'utf8');
    const recording = readFileSync('prometheus/rules/recording.yml', 'utf8');
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
});
