import { type BusinessFigures, PLAN_TARGETS } from '../domain/business.js';
import type { ArmMetrics, DailyReport } from './report-schemas.js';

const pct = (x: number | null) => (x === null ? 'n/a' : `${(x * 100).toFixed(1)}%`);
const num = (x: number | null, digits = 3) => (x === null ? 'n/a' : x.toFixed(digits));
const signed = (x: number | null) => (x === null ? 'n/a' : `${x > 0 ? '+' : ''}${(x * 100).toFixed(1)}%`);

/** Each SLO's budget left, or why there is no figure. */
function sloLine(budgets: DailyReport['slo_budget']): string {
  if (budgets === null) return 'not queried (PROMETHEUS_URL is not set)';
  return budgets
    .map((b) => {
      const figure = b.error
        ? `no figure (${b.error})`
        : b.budget_left === null
          ? 'no traffic'
          : pct(b.budget_left);
      return `${b.slo}${b.deployment ? ` (${b.deployment})` : ''} ${figure} of ${b.period} at ${b.objective}%`;
    })
    .join('; ');
}

/** The daily report as Markdown: what a chat channel or a person reads in a minute. */
export function dailyMarkdown(r: DailyReport): string {
  const arms: [string, ArmMetrics][] = [
    ['ML', r.accuracy.ml],
    ['rules (served)', r.accuracy.heuristic],
    ["rules' shadow on ML bookings", r.accuracy.heuristic_shadow_on_ml],
  ];
  const b = r.business;
  const figures: [string, BusinessFigures][] = [
    ['ML', b.ml],
    ['rules (served)', b.heuristic],
    ["rules' shadow on ML bookings", b.heuristic_shadow_on_ml],
  ];
  const cost = b.cost_per_delay_minute !== null;
  const lines = [
    `# Delay prediction, last 24 h (to ${r.generated_at})`,
    '',
    `- Predictions: ${r.predictions}, ML ${r.ml} (${pct(r.ml_share)}), fallbacks ${r.fallbacks}, mean latency ${num(r.mean_latency_ms)} ms`,
    `- Rollbacks: ${r.rollbacks}; flag changes: ${r.flag_changes.length}`,
    `- Anomalies (|error| above 5 min): ${r.anomalies}`,
    `- SLO budget left: ${sloLine(r.slo_budget)}`,
    `- Reassignment candidates (high risk): ML ${r.reassignment_candidates.ml}, rules ${r.reassignment_candidates.heuristic} (the plan: about ${PLAN_TARGETS.reassignmentsPerDay} a day)`,
    '',
    '## Accuracy',
    '',
    '| arm | scored | MAE (min) | R² |',
    '| --- | --- | --- | --- |',
    ...arms.map(([name, a]) => `| ${name} | ${a.n} | ${num(a.mae)} | ${num(a.r2)} |`),
    '',
    `## Business outcome (late: ${b.late_threshold_minutes} min or more)`,
    '',
    `| arm | scored | late | anticipated | false alarms | buffer unused (min/booking) | buffer shortfall (min/booking) |${cost ? ` cost at ${b.cost_per_delay_minute}/min |` : ''}`,
    `| --- | --- | --- | --- | --- | --- | --- |${cost ? ' --- |' : ''}`,
    ...figures.map(
      ([name, f]) =>
        `| ${name} | ${f.n} | ${f.late} | ${pct(f.anticipated_ratio)} | ${pct(f.false_alarm_ratio)} | ${num(f.buffer_unused_minutes_mean)} | ${num(f.buffer_shortfall_minutes_mean)} |${cost ? ` ${num(f.cost, 2)} |` : ''}`,
    ),
    '',
    `ML against the rules on the same bookings: buffer unused ${signed(b.ml_against_rules.buffer_unused_change)} (the plan: ${signed(PLAN_TARGETS.bufferUnusedChange)}), buffer minutes unused and missing ${signed(b.ml_against_rules.buffer_minutes_change)} (the plan's cost: ${signed(PLAN_TARGETS.costChange)}); anticipated ${pct(b.ml.anticipated_ratio)} (the plan: ${pct(PLAN_TARGETS.anticipatedRatio)} or more).`,
  ];
  if (r.flag_changes.length > 0) {
    lines.push('', '## Flag changes', '', '| at | actor | action | weight | model | alert | reason |');
    lines.push('| --- | --- | --- | --- | --- | --- | --- |');
    for (const c of r.flag_changes)
      lines.push(
        `| ${c.at} | ${c.actor} | ${c.action} | ${c.previous_weight ?? ''} -> ${c.new_weight ?? ''} | ${c.model_version ?? ''} | ${c.alert_name ?? ''} | ${(c.reason ?? '').replaceAll('|', '/')} |`,
      );
  }
  return `${lines.join('\n')}\n`;
}

/** How long a chat webhook may take before the post is given up. */
export const WEBHOOK_TIMEOUT_MS = 10_000;

/**
 * Posts the Markdown to a chat webhook as `{"text": ...}`, the body Slack's, Mattermost's and Rocket.Chat's incoming
 * webhooks take. Throws with the status and the start of the answer when the webhook refuses it.
 */
export async function postToWebhook(url: string, markdown: string, fetchImpl: typeof fetch = fetch) {
  const res = await fetchImpl(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ text: markdown }),
    signal: AbortSignal.timeout(WEBHOOK_TIMEOUT_MS),
  });
  if (!res.ok) throw new Error(`the webhook answered ${res.status}: ${(await res.text()).slice(0, 200)}`);
}
