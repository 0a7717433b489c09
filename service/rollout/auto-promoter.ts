import type { Logger } from 'pino';
import { PROMOTION } from '../domain/rollback-policy.js';
import type { FlagStatus } from '../flags/flag-service.js';
import { type JudgedRollout, nextStep, RolloutChangedError } from '../flags/flag-writer.js';
import type { ServiceMetrics } from '../telemetry/service-metrics.js';
import type { Leadership } from './leadership.js';
import { RollbackLatchHeldError } from './rollback-latch.js';
import type { RolloutService } from './rollout-service.js';

export interface AutoPromoterOptions {
  prometheusUrl: string;
  /** Label matchers of this deployment's series, e.g. `job="delay-prediction", namespace="delay"`. */
  selector: string;
  rollout: RolloutService;
  flagStatus: () => FlagStatus;
  logger: Logger;
  /** How long a step must have been in force before the next one (24 h by default). */
  soakMs: number;
  /** Scored ML bookings each served version needs over PROMOTION.window (at least PROMOTION.minSamples). */
  minSamples: number;
  /** With several replicas only the leader acts; without, this process does. */
  leadership?: Pick<Leadership, 'isLeader'>;
  metrics?: Pick<ServiceMetrics, 'promotionChecks'>;
  now?: () => number;
}

/**
 * The queries a step is judged by, read from the recording rules the rollback alerts use. `selector` (label
 * matchers) keeps them to this deployment's series and alerts: the rules keep `job` and `namespace`, and one
 * Prometheus may scrape several deployments. The first three answer per model version.
 */
export function promotionChecks(selector: string) {
  const and = selector ? `, ${selector}` : '';
  const w = PROMOTION.window;
  const h = PROMOTION.healthWindow;
  const firing = PROMOTION.blockingAlerts.map((labels) => {
    const [[name, value]] = Object.entries(labels) as [[string, string]];
    return `ALERTS{alertstate="firing", ${name}="${value}"${and}}`;
  });
  return {
    pairedDifference: `max by (model_version) (model_version:delay_feedback_paired_difference_minutes:mean${w}{${selector}})`,
    samples: `sum by (model_version) (arm_model_version:delay_feedback_scored:increase${w}{arm="ml"${and}})`,
    mae: `max by (model_version) (arm_model_version:delay_feedback_mae_minutes:${w}{arm="ml"${and}})`,
    fallbackRatio: `max(max_over_time(:delay_ml_fallback:ratio_rate5m{${selector}}[${h}]))`,
    latencyP95: `max(max_over_time(endpoint:delay_prediction_duration_seconds:p95_5m{endpoint="single"${and}}[${h}]))`,
    alerts: `count by (alertname) (${firing.join(' or ')})`,
  } as const;
}
export type PromotionCheck = keyof ReturnType<typeof promotionChecks>;

type Sample = { labels: Record<string, string>; value: number };

export type PromotionDecision =
  | { action: 'promoted'; from: number; to: number; reason: string }
  /** Every reason the step holds, `; `-separated (all of them, so one fix does not reveal the next). */
  | { action: 'held'; reason: string }
  /** Judged healthy, but the flag changed (or was rolled back) while the queries ran: the step holds. */
  | { action: 'voided'; reason: string };

const minutes = (n: number) => `${n > 0 ? '+' : ''}${n.toFixed(2)} min`;
// Down: increase() extrapolates, and 199.6 bookings are not the 200 a guard needs.
const bookings = (n: number) => Math.floor(n).toLocaleString('en-US');

/**
 * Every reason the answers hold a step for (none: it may be promoted), and the evidence a promotion's audit row
 * keeps. `versions` are the model versions the flag serves: each is judged on its own bookings.
 */
function weigh(
  answers: Record<PromotionCheck, Sample[]>,
  versions: string[],
  minSamples: number,
): { holds: string[]; evidence: string } {
  const of = (name: PromotionCheck, version: string) =>
    answers[name].find((s) => s.labels.model_version === version)?.value;
  const w = PROMOTION.window;
  const holds: string[] = [];
  const judged: string[] = [];
  if (versions.length === 0) holds.push('the flag serves no model version');
  for (const version of versions) {
    const samples = of('samples', version) ?? 0;
    const paired = of('pairedDifference', version);
    const mae = of('mae', version);
    const maeNote = mae === undefined ? '' : `, MAE ${mae.toFixed(2)} min`;
    if (samples < minSamples) {
      holds.push(
        `${version}: ${bookings(samples)} scored ML bookings over ${w}, ${bookings(minSamples)} needed`,
      );
    } else if (paired === undefined) {
      holds.push(`${version}: no paired difference over ${w}`);
    } else if (paired > PROMOTION.pairedMeanMinutes) {
      holds.push(
        `${version} losing to the rules: paired difference ${minutes(paired)} over ${bookings(samples)} bookings${maeNote}`,
      );
    } else {
      judged.push(
        `${version} paired difference ${minutes(paired)} over ${bookings(samples)} bookings${maeNote}`,
      );
    }
  }
  const bars = [
    ['fallback ratio', 'fallbackRatio', PROMOTION.fallbackRatio, ''],
    ['p95 latency', 'latencyP95', PROMOTION.latencyP95, ' s'],
  ] as const;
  const health: string[] = [];
  for (const [label, name, limit, unit] of bars) {
    const raw = answers[name][0]?.value;
    const value = raw === undefined ? undefined : Number(raw.toPrecision(3));
    if (value === undefined) holds.push(`no data for ${label} over ${PROMOTION.healthWindow}`);
    else if (value > limit) holds.push(`${label} ${value}${unit} above ${limit}${unit}`);
    else health.push(`${label} ${value}${unit}`);
  }
  for (const alert of answers.alerts) holds.push(`alert ${alert.labels.alertname ?? '(unnamed)'} firing`);
  const evidence = `at least as good as the rules over ${w}: ${judged.join('; ')}; ${health.join(', ')}; no page or rollback alert firing`;
  return { holds, evidence };
}

/**
 * Optional (AUTO_PROMOTE): moves the rollout to its next step once the current one has soaked and is judged as a
 * rollback would judge it (PROMOTION in service/domain/rollback-policy.ts): each served model version at least as
 * good as the rules on the same bookings, on enough scored bookings; no page or rollback alert firing for the
 * deployment; fallback ratio and latency under their bars. The absolute MAE is reported, never a bar: in a storm
 * both arms miss, and a model that misses less than the rules is worth promoting. No data, too little data or a
 * failing query holds the step; it never promotes from 0% (a rollback, or a rollout no person started) and never
 * waits in the way of a rollback, which goes through the webhook. The promotion is a compare-and-set on the
 * rollout it judged: a rollback (or any lowering of the share) audited since the judgement, or a flag that no
 * longer holds what was judged when the write takes the store's lock, voids it. Each decision is counted by its
 * action.
 */
export function createAutoPromoter({
  prometheusUrl,
  selector,
  rollout,
  flagStatus,
  logger,
  soakMs,
  minSamples,
  leadership,
  metrics,
  now = Date.now,
}: AutoPromoterOptions) {
  const log = logger.child({ component: 'auto-promoter' });
  const checks = promotionChecks(selector);

  async function query(name: PromotionCheck): Promise<Sample[]> {
    const url = new URL(`/api/v1/query?query=${encodeURIComponent(checks[name])}`, prometheusUrl);
    const res = await fetch(url, { signal: AbortSignal.timeout(5000) });
    const body = (await res.json()) as {
      status: string;
      error?: string;
      data?: { result: { metric: Record<string, string>; value: [number, string] }[] };
    };
    if (body.status !== 'success') throw new Error(`${name}: ${body.error ?? `HTTP ${res.status}`}`);
    // NaN (0/0 on a window without feedback) and infinities are no data.
    return (body.data?.result ?? [])
      .map((r) => ({ labels: r.metric, value: Number(r.value[1]) }))
      .filter((r) => Number.isFinite(r.value));
  }

  async function judge(): Promise<PromotionDecision> {
    if (leadership && !(await leadership.isLeader()))
      return { action: 'held', reason: 'another replica leads the promotion (Postgres advisory lock)' };
    // Marked before the flag is read: any change after what is judged has a later audit row.
    let mark: number | null;
    try {
      mark = await rollout.auditMark();
    } catch (err) {
      return { action: 'held', reason: `the audit cannot be read: ${(err as Error).message}` };
    }
    const status = flagStatus();
    const current = status.ml_percentage;
    if (current === null) return { action: 'held', reason: 'the delay-model targeting is not a plain split' };
    if (current === 0)
      return { action: 'held', reason: 'ML is off: a person starts (or restarts) the rollout' };
    const to = nextStep(current);
    if (to === null) return { action: 'held', reason: 'the rollout is complete' };
    const since = status.last_changed_at ? Date.parse(status.last_changed_at) : now();
    if (now() - since < soakMs)
      return { action: 'held', reason: `soaking until ${new Date(since + soakMs).toISOString()}` };
    const judged: JudgedRollout = {
      mlPercentage: current,
      activeModelVersions: status.model_versions,
      split: status.split,
    };

    let answers: Record<PromotionCheck, Sample[]>;
    try {
      const names = Object.keys(checks) as PromotionCheck[];
      const results = await Promise.all(names.map(query));
      answers = Object.fromEntries(names.map((name, i) => [name, results[i]])) as typeof answers;
    } catch (err) {
      return { action: 'held', reason: `Prometheus did not answer: ${(err as Error).message}` };
    }
    const { holds, evidence } = weigh(answers, status.model_versions, minSamples);
    if (holds.length > 0) return { action: 'held', reason: holds.join('; ') };
    // The queries took time: a rollback meanwhile voids the judgement, even if ML is back at the same share.
    let lowered: Awaited<ReturnType<RolloutService['loweredSince']>>;
    try {
      lowered = await rollout.loweredSince(mark);
    } catch (err) {
      return { action: 'held', reason: `the audit cannot be read: ${(err as Error).message}` };
    }
    if (lowered) {
      return {
        action: 'voided',
        reason: `${lowered.actor} ${lowered.action} ${lowered.previousWeight} -> ${lowered.newWeight} since the judgement at ${current}%`,
      };
    }
    try {
      await rollout.promote(judged, to, {
        actor: 'auto-promoter',
        action: 'promote',
        reason: evidence,
      });
    } catch (err) {
      if (err instanceof RolloutChangedError) return { action: 'voided', reason: err.message };
      // A rollback holds until a person lifts it: the machines never climb over it.
      if (err instanceof RollbackLatchHeldError) return { action: 'held', reason: err.message };
      throw err;
    }
    return { action: 'promoted', from: current, to, reason: evidence };
  }

  /** One check, counted by what it decided (failed: it threw, the step holds). */
  async function check(): Promise<PromotionDecision> {
    try {
      const decision = await judge();
      metrics?.promotionChecks.add(1, { outcome: decision.action });
      return decision;
    } catch (err) {
      metrics?.promotionChecks.add(1, { outcome: 'failed' });
      throw err;
    }
  }

  return {
    check,
    /** Checks every `intervalMs`, logging each decision; a check still waiting on Prometheus skips the next. */
    start(intervalMs: number) {
      let running = false;
      const timer = setInterval(() => {
        if (running) return;
        running = true;
        check()
          .then(
            (decision) =>
              log.info(
                decision,
                decision.action === 'promoted'
                  ? 'rollout promoted'
                  : decision.action === 'voided'
                    ? 'rollout promotion voided: the flag changed since it was judged'
                    : 'rollout held',
              ),
            (err) =>
              log.error({ err: (err as Error).message }, 'auto-promotion check failed; the step holds'),
          )
          .finally(() => {
            running = false;
          });
      }, intervalMs);
      timer.unref();
      return () => clearInterval(timer);
    },
  };
}
