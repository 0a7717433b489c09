import { readFileSync } from 'node:fs';
import { parse } from 'yaml';
import { RULE_FILES } from '../../prometheus/rule-conventions.js';
import { BURN_RATES } from '../../prometheus/slo-generate.js';
import { PLAN_TARGETS } from '../../service/domain/business.js';
import { THRESHOLDS } from '../../service/domain/rollback-policy.js';
import { budget, errorRatioOver, readSlos, SLO_PERIOD } from '../../service/reports/slo-files.js';

/*
 * What the boards take from the rest of the repository rather than copy: datasource uids from Grafana's
 * provisioning, the scrape job from prometheus.yml, the SLOs from slo/*.yaml, the rollback policy's numbers, and the
 * bounds alerts.yml compares with where the policy has none.
 */

export { BURN_RATES, PLAN_TARGETS, SLO_PERIOD, THRESHOLDS };

interface ProvisionedDatasource {
  name: string;
  uid: string;
  type: string;
}
const provisioned = (
  parse(readFileSync('grafana/provisioning/datasources/datasources.yml', 'utf8')) as {
    datasources: ProvisionedDatasource[];
  }
).datasources;

function datasource(type: string): ProvisionedDatasource {
  const found = provisioned.find((d) => d.type === type);
  if (!found) throw new Error(`grafana/provisioning/datasources/datasources.yml provisions no ${type}`);
  return found;
}
export const PROMETHEUS = datasource('prometheus');
export const POSTGRES = datasource('grafana-postgresql-datasource');
export const JAEGER = datasource('jaeger');

/** The scrape job of the service (prometheus.yml's first scrape config): the job label of every series. */
export const SCRAPE_JOB = (
  parse(readFileSync('prometheus/prometheus.yml', 'utf8')) as { scrape_configs: { job_name: string }[] }
).scrape_configs[0]?.job_name as string;

interface Rule {
  alert?: string;
  record?: string;
  expr: string;
  labels?: Record<string, string>;
}
const rules = RULE_FILES.flatMap(
  (f) => (parse(readFileSync(f, 'utf8')) as { groups: { rules: Rule[] }[] }).groups,
).flatMap((g) => g.rules);

/** The alerts that roll back: the labels every one carries, for the annotations' tags. */
export const ROLLBACK_ALERTS = rules.filter((r) => r.alert && r.labels?.rollback === 'true');

/** The number an alert compares `series` with (`series{...} > N`): a panel colours at the alert's own bound. */
export function alertBound(alert: string, series: string): number {
  const rule = rules.find((r) => r.alert === alert);
  const escaped = series.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  const match = rule?.expr.match(new RegExp(`${escaped}(?:\\{[^}]*\\})?\\s*>\\s*([0-9.]+)`));
  if (!match) throw new Error(`${alert} does not compare ${series} with a number`);
  return Number(match[1]);
}

/** Each SLO of slo/*.yaml: its objective as a ratio of events and its SLI over the budget's period. */
export const SLOS = readSlos().flatMap((file) =>
  file.slos.map((slo) => ({
    name: slo.name,
    objective: slo.objective,
    description: slo.description,
    budget: budget(slo.objective),
    periodErrorRatio: errorRatioOver(slo, SLO_PERIOD),
  })),
);
