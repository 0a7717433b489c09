import type { Logger } from 'pino';
import { THRESHOLDS } from '../domain/rollback-policy.js';
import type { FlagStatus } from '../flags/flag-service.js';
import { type JudgedRollout, nextStep, RolloutChangedError } from '../flags/flag-writer.js';
import type { ServiceMetrics } from '../telemetry/service-metrics.js';
import type { Leadership } from './leadership.js';
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
  minSamples: number;
  /** With several replicas only the leader acts; without, this process does. */
  leadership?: Pick<Leadership, 'isLeader'>;
  metrics?: Pick<ServiceMetrics, 'promotionChecks'>;
  now?: () => number;
}

/**
 * The health a step must show over its soak to be promoted; the same thresholds as the alerts. `selector` (label
 * matchers) keeps the queries to this deployment's series: the rules keep `job` and `namespace`, and one
 * Prometheus may scrape several deployments.
 */
export function promotionChecks(selector: string) {
  const and = selector ? `, ${selector}` : '';
  return {
    samples: `sum(arm_model_version:delay_feedback_scored:increase24h{arm="ml"${and}})`,
    mae: `max(arm_model_version:delay_feedback_mae_minutes:24h{arm="ml"${and}})`,
    fallbackRatio: `max(max_over_time(:delay_ml_fallback:ratio_rate5m{${selector}}[1h]))`,
    latencyP95: `max(max_over_time(endpoint:delay_prediction_duration_seconds:p95_5m{endpoint="single"${and}}[1h]))`,
  } as const;
}
export type PromotionCheck = keyof ReturnType<typeof promotionChecks>;
/** A step is promoted only below every bar a rollback or a warning would judge it by. */
export const LIMITS = {
  mae: THRESHOLDS.maeTarget,
  fallbackRatio: THRESHOLDS.fallbackRatio.long,
  latencyP95: THRESHOLDS.latencyP95,
} as const;

export type PromotionDecision =
  | { action: 'promoted'; from: number; to: number }
  | { action: 'held'; reason: string }
  /** Judged healthy, but the flag changed (or was rolled back) while the queries ran: the step holds. */
  | { action: 'voided'; reason: string };

/**
 * Optional (AUTO_PROMOTE): moves the rollout to its next step once the current one has soaked with healthy
 * MAE, fallback ratio and latency on enough samples. No data, too little data or a failing query holds the
 * step; it never promotes from 0% (a rollback, or a rollout no person started) and never waits in the way of
 * a rollback, which goes through the webhook. The promotion is a compare-and-set on the rollout it judged: a
 * rollback (or any lowering of the share) audited since the judgement, or a flag that no longer holds what was
 * judged when the write takes the store's lock, voids it. Each decision is counted by its action.
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

  async function scalar(expr: string): Promise<number | null> {
    const res = await fetch(new URL(`/api/v1/query?query=${encodeURIComponent(expr)}`, prometheusUrl), {
      signal: AbortSignal.timeout(5000),
    });
    const body = (await res.json()) as { status: string; data?: { result: { value: [number, string] }[] } };
    const value = body.status === 'success' ? body.data?.result[0]?.value[1] : undefined;
    const n = value === undefined ? Number.NaN : Number(value);
    return Number.isFinite(n) ? n : null;
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

    let values: Record<PromotionCheck, number | null>;
    try {
      const entries = await Promise.all(
        Object.entries(checks).map(async ([name, expr]) => [name, await scalar(expr)] as const),
      );
      values = Object.fromEntries(entries) as typeof values;
    } catch (err) {
      return { action: 'held', reason: `Prometheus did not answer: ${(err as Error).message}` };
    }
    const missing = Object.entries(values)
      .filter(([, v]) => v === null)
      .map(([name]) => name);
    if (missing.length > 0) return { action: 'held', reason: `no data for ${missing.join(', ')}` };
    if ((values.samples as number) < minSamples) {
      return { action: 'held', reason: `${values.samples} scored ML bookings, ${minSamples} needed` };
    }
    for (const name of ['mae', 'fallbackRatio', 'latencyP95'] as const) {
      if ((values[name] as number) > LIMITS[name]) {
        return { action: 'held', reason: `${name} ${values[name]} above ${LIMITS[name]}` };
      }
    }
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
        reason: `healthy over the soak: MAE ${values.mae}, fallback ratio ${values.fallbackRatio}, p95 ${values.latencyP95} s, ${values.samples} bookings`,
      });
    } catch (err) {
      if (err instanceof RolloutChangedError) return { action: 'voided', reason: err.message };
      throw err;
    }
    return { action: 'promoted', from: current, to };
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
