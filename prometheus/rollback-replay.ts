import { readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { trace } from '@opentelemetry/api';
import { PrometheusExporter, PrometheusSerializer } from '@opentelemetry/exporter-prometheus';
import { MeterProvider } from '@opentelemetry/sdk-metrics';
import { sql } from 'drizzle-orm';
import { uniformFloat64 } from 'pure-rand/distribution/uniformFloat64';
import { xoroshiro128plus } from 'pure-rand/generator/xoroshiro128plus';
import { parse } from 'yaml';
import { generateBookings, type RawBooking, type Season } from '../models/generator.js';
import { generateTraffic, type TimedBooking, utcOfLocal } from '../models/traffic.js';
import { composeService } from '../service/compose.js';
import { loadConfig } from '../service/config/config.js';
import type { Booking } from '../service/domain/booking.js';
import type { DriftBaseline } from '../service/domain/drift-baseline.js';
import { DRIFT_FEATURES } from '../service/drift/drift-monitor.js';
import { WEATHER_FEATURES } from '../service/features/booking-features.js';
import type { ShadowBaseline } from '../service/features/moments.js';
import { ACTUAL_DELAY_FLOOR } from '../service/feedback/feedback-service.js';
import type { ModelPredictor } from '../service/models/model-registry.js';
import { INSTRUMENTATION_SCOPE } from '../service/telemetry/otel.js';
import { initializeCounters } from '../service/telemetry/service-metrics.js';
import {
  flagsDocument,
  postJson,
  silentLogger,
  tempDir,
  writeFlags,
} from '../service/test-support/harness.js';
import { evaluateRules, RULE_FILES, type Sample, taggedQuery } from './promtool-eval.js';

/**
 * Replays traffic through the real service and Prometheus' rule engine at the shipped settings: the service
 * (flags from a flag file, the committed ONNX model, PGlite, the prediction log, the feedback scorer, the drift
 * monitor) answers generator bookings and their feedback in-process, one simulated scrape interval at a time;
 * after each interval its own Prometheus exporter's text is taken as that scrape. promtool then evaluates
 * prometheus/rules/*.yml over those scrapes at the shipped evaluation interval, and the ALERTS series say
 * what fired when. The leg after Prometheus is timed for real on the same service: the firing alert is posted
 * to the service's rollback webhook and the flag service, at the shipped poll interval, picks up the change;
 * Alertmanager's part is the rollback route's group_wait from alertmanager/alertmanager.yml.
 * Stand-ins: the weather each generator booking had is the weather lookup's answer; a model that
 * misbehaves is the committed model with its answers shifted, delayed or failing.
 */
export interface ModelBehaviour {
  /** Minutes added to every answer; a function of the minutes since the phase started for a gradual drift. */
  offsetMinutes?: number | ((minute: number) => number);
  fails?: boolean;
  delayMs?: number;
}

export type Truth =
  /** The generator's actual delay. */
  | 'generator'
  /** The generator's delay plus rush-hour incidents and Student-t noise: heavy tails, for both arms. */
  | 'heavy_tailed'
  /** Every trip harder to predict for both arms alike: the served answer + N(0, 8 min). */
  | 'storm';

export interface ReplayPhase {
  minutes: number;
  /** ML share of the delay-model flag. */
  mlWeight?: number;
  modelVersion?: string;
  model?: ModelBehaviour;
  truth?: Truth;
  season?: Season;
  predictionsPerSecond?: number;
  /** Share of bookings whose actual delay comes back, and how long after the prediction. */
  feedbackShare?: number;
  feedbackDelaySeconds?: number;
}

export interface ReplayScenario {
  name: string;
  /**
   * Traffic in time order from this local (Paris) moment: consecutive hours at the demand curve's rate (a phase's
   * `predictionsPerSecond` is then the daily mean), each hour with its day's weather (models/traffic.ts).
   * Absent: bookings drawn from random days and hours of the year, in random order.
   */
  start?: { day: string; hour: number };
  phases: ReplayPhase[];
  /** Detection is timed from the start of this phase (index); absent: a scenario that must stay quiet. */
  breakPhase?: number;
}

export interface AlertFiring {
  alertname: string;
  severity: string | null;
  signal: string | null;
  rollback: boolean;
  /** Seconds from the break (or from the start) to the first firing evaluation. */
  after_s: number;
  /**
   * Whether Alertmanager would notify its receivers: the alert fired at an evaluation where no alert naming its
   * `depends_on` as `cause` fired (alertmanager.yml's inhibition, equal on job and namespace).
   */
  notified: boolean;
}

export interface ReplayResult {
  scenario: string;
  minutes: number;
  predictions: number;
  feedback: number;
  /** Every alert that fired, first firing first. */
  alerts: AlertFiring[];
  /** Rollback alerts that fired before the break: false alarms. */
  rollback_before_break: string[];
  rollback: null | {
    alertname: string;
    signal: string | null;
    alert_s: number;
    alertmanager_group_wait_s: number;
    webhook_to_heuristic_s: number;
    to_heuristic_s: number;
  };
  /** The highest 5-minute values before the break (the whole run when there is none), against the rules' bounds. */
  healthy_peaks: Record<keyof typeof PEAKS, number | null>;
  elapsed_s: number;
}

/** The drift features the alerts judge: those that are not weather (their rules filter the same list out). */
const BOOKING_FEATURES = `feature!~"${WEATHER_FEATURES.filter((f) => DRIFT_FEATURES.includes(f)).join('|')}"`;
/** What the label-free and drift rules judge, as recorded; PSI where the alerts' 500 observations are there. */
const PEAKS = {
  shadow_departure_abs: 'model_version:delay_prediction_shadow_departure_minutes:abs_mean5m',
  shadow_departure_signed_high: 'model_version:delay_prediction_shadow_departure_minutes:mean5m',
  shadow_departure_signed_low: '-model_version:delay_prediction_shadow_departure_minutes:mean5m',
  shadow_gap_raw: 'model_version:delay_prediction_shadow_gap_minutes:mean5m',
  booking_feature_psi: `feature:delay_feature_psi:5m{${BOOKING_FEATURES}} and on (job, namespace, feature) feature:delay_features_observations:increase5m >= 500`,
} as const;

export const SCRAPE_SECONDS = 15;
const IN_FLIGHT = 4;
const DEFAULT_PHASE: Required<Omit<ReplayPhase, 'minutes' | 'model' | 'season'>> = {
  mlWeight: 50,
  modelVersion: 'gbt-v2',
  truth: 'generator',
  predictionsPerSecond: 4,
  feedbackShare: 0.25,
  feedbackDelaySeconds: 30,
};

/** The shipped evaluation interval and the rollback route's group_wait, read from the committed files. */
export function shippedSettings() {
  const prometheus = parse(readFileSync('prometheus/prometheus.yml', 'utf8'));
  const alertmanager = parse(readFileSync('alertmanager/alertmanager.yml', 'utf8'));
  const route = alertmanager.route.routes.find(
    (r: { receiver: string }) => r.receiver === 'rollback-webhook',
  );
  const seconds = (d: string) => {
    const m = /^(\d+)(ms|s|m)$/.exec(d);
    if (!m) throw new Error(`unsupported duration ${d}`);
    return Number(m[1]) * { ms: 0.001, s: 1, m: 60 }[m[2] as 'ms' | 's' | 'm'];
  };
  return {
    scrapeSeconds: seconds(prometheus.global.scrape_interval),
    evaluationSeconds: seconds(prometheus.global.evaluation_interval),
    groupWaitSeconds: seconds(route.group_wait ?? alertmanager.route.group_wait),
    flagPollMs: loadConfig({}).flags.pollIntervalMs,
  };
}

/** The metric names the rules read: only those scrapes are kept. */
function ruleMetricNames(): Set<string> {
  const text = RULE_FILES.map((f) => readFileSync(f, 'utf8')).join('\n');
  return new Set(text.match(/\bdelay_[a-z0-9_]+/g) ?? []);
}

type Rng = () => number;
const rngFrom = (seed: number): Rng => {
  const g = xoroshiro128plus(seed);
  return () => uniformFloat64(g);
};
const normal = (rng: Rng) => Math.sqrt(-2 * Math.log(1 - rng())) * Math.cos(2 * Math.PI * rng());
/** Student-t with 3 degrees of freedom: a normal over the root of a chi-square's mean. */
const studentT3 = (rng: Rng) =>
  normal(rng) / Math.sqrt((normal(rng) ** 2 + normal(rng) ** 2 + normal(rng) ** 2) / 3);

function heavyTailed(rng: Rng, row: RawBooking): number {
  const hour = Number(row.booking.scheduled_at.slice(11, 13));
  const rush = (hour >= 7 && hour <= 9) || (hour >= 16 && hour <= 19);
  // An incident at rush hour holds a trip 5-60 min (exponential, mean 15); otherwise t-distributed noise.
  const incident = rush && rng() < 0.03 ? Math.min(60, 5 + -Math.log(1 - rng()) * 15) : 0;
  return Math.max(0, row.actual_delay_minutes + 1.5 * studentT3(rng) + incident);
}

/** A phase's time-ordered bookings, and the UTC moment its first scrape interval starts. */
function timedPhase(
  start: { day: string; hour: number },
  afterMinutes: number,
  phase: Required<Omit<ReplayPhase, 'model' | 'season'>> & Pick<ReplayPhase, 'season'>,
  seed: number,
) {
  const local = Date.parse(`${start.day}T00:00:00Z`) + (start.hour * 60 + afterMinutes) * 60_000;
  const day = new Date(local).toISOString().slice(0, 10);
  const hour = (local % 86_400_000) / 3_600_000;
  const rows = generateTraffic({
    seed,
    startDay: day,
    startHour: hour,
    hours: phase.minutes / 60,
    perSecond: phase.predictionsPerSecond,
    season: phase.season ?? {},
  });
  return { rows, startMs: utcOfLocal(day, hour) };
}

interface Scrapes {
  steps: number;
  series: Map<string, (string | undefined)[]>;
}

/** Builds the service with the composition root, and the replay's stand-ins for weather and misbehaving models. */
async function replayService(behaviourOf: (version: string) => ModelBehaviour, flagPollMs: number) {
  const exporter = new PrometheusExporter({ preventServerStart: true });
  const provider = new MeterProvider({ readers: [exporter] });
  const dir = tempDir('delay-rollback-replay-');
  const flagsFile = join(dir, 'flags.json');
  writeFlags(flagsFile, flagsDocument({ mlWeight: 50 }));
  const webhookToken = 'rollback-replay-token-0123456789';
  const config = loadConfig(
    {},
    {
      FLAGS_FILE: flagsFile,
      FLAGS_POLL_INTERVAL_MS: flagPollMs,
      DATA_DIR: join(dir, 'data'),
      ALERTMANAGER_WEBHOOK_TOKEN: webhookToken,
    },
  );
  const card = JSON.parse(readFileSync('models/gbt-v2.json', 'utf8')) as {
    drift: DriftBaseline;
    shadow_baseline: ShadowBaseline;
  };
  // Minutes into the current phase: what a gradual misbehaviour is a function of.
  let phaseMinute = 0;
  const weatherOf = new Map<string, RawBooking['weather']>();
  const service = await composeService(config, {
    telemetry: {
      meter: provider.getMeter(INSTRUMENTATION_SCOPE),
      tracer: trace.getTracer('rollback-replay'),
    },
    logger: silentLogger,
    // Stand-in: gbt-v2 under every version, shifted, delayed or failing as the scenario says.
    loadModel: async (version, onnx): Promise<ModelPredictor> => {
      const base = await onnx('gbt-v2');
      return {
        version,
        driftBaseline: { ...card.drift, model_version: version },
        // A broken version's card describes the model it was meant to be: gbt-v2's.
        shadowBaseline: card.shadow_baseline,
        async predict(vectors) {
          const b = behaviourOf(version);
          if (b.fails) throw new Error(`replay: ${version} fails`);
          if (b.delayMs) await new Promise((r) => setTimeout(r, b.delayMs));
          const out = await base.predict(vectors);
          const o =
            typeof b.offsetMinutes === 'function' ? b.offsetMinutes(phaseMinute) : (b.offsetMinutes ?? 0);
          return o === 0
            ? out
            : // A model shifted down still answers no less than 0, as the graph's floor makes it.
              out.map((e) => ({
                ...e,
                delay_minutes: Math.max(0, e.delay_minutes + o),
                interval: {
                  ...e.interval,
                  low: Math.max(0, e.interval.low + o),
                  high: Math.max(0, e.interval.high + o),
                },
              }));
        },
      };
    },
    // Stand-in: each generator booking's own weather, as the API would have answered it.
    weather: {
      lookup: async (b: Booking) => ({
        source: 'api' as const,
        conditions: weatherOf.get(b.booking_id) ?? null,
      }),
    },
    // The replay waits for the log after every simulated interval: a short pause keeps 72 h within the hour.
    predictionLogFlushMs: 10,
  });
  const { app, flags, models, metrics, predictionLog, database } = service;
  const serializer = new PrometheusSerializer();
  return {
    app,
    flags,
    flagsFile,
    weatherOf,
    webhookToken,
    setPhaseMinute: (m: number) => {
      phaseMinute = m;
    },
    /** Sets the flag as a person or the CLI would, and waits until the service reads it. */
    async setFlag(mlWeight: number, modelVersion: string) {
      writeFlags(flagsFile, flagsDocument({ mlWeight, modelVersion }));
      const deadline = Date.now() + 10_000;
      while (
        !(
          flags.status().ml_percentage === mlWeight &&
          (mlWeight === 0 || flags.status().model_variants?.includes(modelVersion))
        )
      ) {
        if (Date.now() > deadline)
          throw new Error(`the flag service did not read ${modelVersion} at ${mlWeight}%`);
        await new Promise((r) => setTimeout(r, 20));
      }
      initializeCounters(metrics, flags.status().model_variants ?? []);
      await models.preload(flags.status().model_variants ?? []);
      // The status reads the file; the evaluations follow when the provider's own watch has seen it.
      const probes = Array.from({ length: 100 }, (_, i) => `flag-probe-${i}`);
      for (;;) {
        const variants = new Set(
          (await Promise.all(probes.map((id) => flags.modelVariant(id, { priority: 'standard' })))).map(
            (a) => a.variant,
          ),
        );
        variants.delete('heuristic');
        if ([...variants].join() === (mlWeight === 0 ? '' : modelVersion)) break;
        if (Date.now() > deadline) throw new Error(`flag evaluations did not move to ${modelVersion}`);
        await new Promise((r) => setTimeout(r, 20));
      }
    },
    async scrape() {
      const { resourceMetrics } = await exporter.collect();
      return serializer.serialize(resourceMetrics);
    },
    async logWritten() {
      while (predictionLog.depth() > 0) await new Promise((r) => setTimeout(r, 2));
    },
    /** Keeps PGlite small on long replays: predictions older than any feedback still to come. */
    async forget(beforeMs: number) {
      await database.db.execute(sql`delete from predictions where predicted_at < ${new Date(beforeMs)}`);
    },
    async close() {
      await service.close(2000);
      await provider.shutdown();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

const SERIES_LINE = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{([^}]*)\})? (\S+)/;
/** The labels Prometheus adds to every series it scrapes, as prometheus/prometheus.yml's job would. */
const TARGET_LABELS = 'job="delay-prediction",instance="replay"';

/** Runs one scenario through the service; returns its scrapes and the service, still open. */
async function drive(scenario: ReplayScenario, seed: number, flagPollMs: number) {
  const phases = scenario.phases.map((p) => ({ ...DEFAULT_PHASE, ...p }));
  const behaviour = new Map<string, ModelBehaviour>();
  const service = await replayService((v) => behaviour.get(v) ?? {}, flagPollMs);
  const keep = ruleMetricNames();
  const scrapes: Scrapes = { steps: 0, series: new Map() };
  const sample = (key: string, value: string | undefined) => {
    let values = scrapes.series.get(key);
    if (!values) {
      values = [];
      scrapes.series.set(key, values);
    }
    values[scrapes.steps] = value;
  };
  const record = (text: string) => {
    for (const line of text.split('\n')) {
      const m = SERIES_LINE.exec(line);
      if (!m) continue;
      const base = (m[1] as string).replace(/_(bucket|sum|count)$/, '');
      if (!keep.has(m[1] as string) && !keep.has(base)) continue;
      sample(`${m[1]}{${[TARGET_LABELS, m[2]].filter(Boolean).join(',')}}`, m[3]);
    }
    // Prometheus's own series for a scrape that succeeded (DelayServiceDown, DelayMetricsAbsent read it).
    sample(`up{${TARGET_LABELS}}`, '1');
    scrapes.steps += 1;
  };
  const phaseStartMinutes = phases.map((_, p) => phases.slice(0, p).reduce((sum, q) => sum + q.minutes, 0));
  const rng = rngFrom(seed);
  const pending: { due: number; booking_id: string; actual: number }[] = [];
  let predictions = 0;
  let feedback = 0;
  let step = 0;
  record(await service.scrape());
  let current = { mlWeight: 50, modelVersion: 'gbt-v2' };
  for (const [p, phase] of phases.entries()) {
    if (phase.mlWeight !== current.mlWeight || phase.modelVersion !== current.modelVersion) {
      await service.setFlag(phase.mlWeight, phase.modelVersion);
      current = { mlWeight: phase.mlWeight, modelVersion: phase.modelVersion };
    }
    behaviour.set(phase.modelVersion, phase.model ?? {});
    const steps = (phase.minutes * 60) / SCRAPE_SECONDS;
    const perStep = phase.predictionsPerSecond * SCRAPE_SECONDS;
    let rows: RawBooking[] = [];
    // One traffic seed for every phase: the same days keep the same weather across a break.
    const timed = scenario.start
      ? timedPhase(scenario.start, phaseStartMinutes[p] as number, phase, seed)
      : null;
    for (let s = 0; s < steps; s++, step++) {
      service.setPhaseMinute((s * SCRAPE_SECONDS) / 60);
      let n = 0;
      if (timed) {
        // The bookings whose prediction is asked within this scrape interval, in order.
        const until = timed.startMs + (s + 1) * SCRAPE_SECONDS * 1000;
        while (n < timed.rows.length && (timed.rows[n] as TimedBooking).requested_at_ms < until) n += 1;
        rows = timed.rows;
      } else {
        // Whole bookings per step on average: a fractional rate carries over from step to step.
        n = Math.floor((s + 1) * perStep) - Math.floor(s * perStep);
        if (rows.length < n) {
          rows = generateBookings({
            seed: seed * 1000 + p * 100_000 + step,
            count: Math.max(n, Math.ceil(perStep * 240)),
            season: phase.season ?? {},
          });
        }
      }
      const batch = rows.splice(0, n).map((r, i) => ({
        ...r,
        booking: { ...r.booking, booking_id: `${seed}-${step}-${i}` },
      }));
      for (const r of batch) service.weatherOf.set(r.booking.booking_id, r.weather);
      // A few requests at a time, as 4 predictions/s arrive: a whole interval at once would queue its bookings
      // behind each other and time ML out, which real traffic at this rate never does.
      const answers: { delay_minutes: number }[] = [];
      for (let i = 0; i < batch.length; i += IN_FLIGHT) {
        answers.push(
          ...(await Promise.all(
            batch.slice(i, i + IN_FLIGHT).map(async (r) => {
              const res = await postJson(service.app, '/v1/predictions', r.booking);
              if (res.status !== 200)
                throw new Error(`prediction answered ${res.status}: ${await res.text()}`);
              return (await res.json()) as { delay_minutes: number };
            }),
          )),
        );
      }
      predictions += batch.length;
      batch.forEach((r, i) => {
        service.weatherOf.delete(r.booking.booking_id);
        if (rng() >= phase.feedbackShare) return;
        const served = (answers[i] as { delay_minutes: number }).delay_minutes;
        const actual =
          phase.truth === 'storm'
            ? Math.max(ACTUAL_DELAY_FLOOR, served + 8 * normal(rng))
            : phase.truth === 'heavy_tailed'
              ? heavyTailed(rng, r)
              : r.actual_delay_minutes;
        pending.push({
          due: step + Math.round(phase.feedbackDelaySeconds / SCRAPE_SECONDS),
          booking_id: r.booking.booking_id,
          actual: Math.round(actual * 100) / 100,
        });
      });
      const due = pending.filter((f) => f.due <= step);
      if (due.length > 0) {
        await service.logWritten();
        const res = await postJson(service.app, '/v1/feedback/batch', {
          feedback: due.map((f) => ({ booking_id: f.booking_id, actual_delay_minutes: f.actual })),
        });
        if (res.status !== 200) throw new Error(`feedback answered ${res.status}: ${await res.text()}`);
        feedback += due.length;
        pending.splice(0, pending.length, ...pending.filter((f) => f.due > step));
      }
      if (step % 240 === 239) await service.forget(Date.now() - 120_000 - 1000 * phase.feedbackDelaySeconds);
      record(await service.scrape());
    }
  }
  return { service, scrapes, predictions, feedback, phases };
}

function promtoolSeries(scrapes: Scrapes) {
  return [...scrapes.series].map(([series, values]) => ({
    series,
    values: Array.from({ length: scrapes.steps }, (_, i) => values[i] ?? '_').join(' '),
  }));
}

/** Posts the alert to the service's webhook as Alertmanager would, and times the first all-heuristic answer. */
async function webhookToHeuristic(
  service: Awaited<ReturnType<typeof replayService>>,
  labels: Record<string, string>,
) {
  const started = performance.now();
  const res = await service.app.request('/v1/webhooks/alertmanager', {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${service.webhookToken}` },
    body: JSON.stringify({
      status: 'firing',
      receiver: 'rollback-webhook',
      alerts: [{ status: 'firing', labels, annotations: { summary: 'replayed' }, fingerprint: 'replay' }],
    }),
  });
  if (res.status !== 200) throw new Error(`the webhook answered ${res.status}`);
  for (let probe = 0; ; probe++) {
    const ids = Array.from({ length: 20 }, (_, i) => ({
      booking_id: `probe-${probe}-${i}`,
      scheduled_at: '2025-03-04T08:15:00+01:00',
      pickup: { lat: 48.8566, lon: 2.3522 },
      dropoff: { lat: 48.8867, lon: 2.3431 },
    }));
    const answered = (await (
      await postJson(service.app, '/v1/predictions/batch', { bookings: ids })
    ).json()) as {
      predictions: { source: string }[];
    };
    if (answered.predictions.every((p) => p.source === 'heuristic'))
      return (performance.now() - started) / 1000;
    if (performance.now() - started > 30_000) throw new Error('ML still serving 30 s after the rollback');
    await new Promise((r) => setTimeout(r, 10));
  }
}

export async function replayRollback(
  scenario: ReplayScenario,
  { seed = 1, promtool = 'promtool' }: { seed?: number; promtool?: string } = {},
): Promise<ReplayResult> {
  const started = performance.now();
  const settings = shippedSettings();
  if (settings.scrapeSeconds !== SCRAPE_SECONDS)
    throw new Error(
      `prometheus.yml scrapes every ${settings.scrapeSeconds} s; the replay steps ${SCRAPE_SECONDS} s`,
    );
  const { service, scrapes, predictions, feedback, phases } = await drive(
    scenario,
    seed,
    settings.flagPollMs,
  );
  try {
    const minutes = phases.reduce((s, p) => s + p.minutes, 0);
    const breakAtS =
      scenario.breakPhase === undefined
        ? 0
        : phases.slice(0, scenario.breakPhase).reduce((s, p) => s + p.minutes * 60, 0);
    const hours = Array.from({ length: Math.ceil(minutes / 60) }, (_, h) => Math.min((h + 1) * 60, minutes));
    const firing = 'ALERTS{alertstate="firing"}';
    // Firing and not inhibited: no alert whose `cause` is this one's `depends_on` fires on the same job, namespace.
    const notified = `${firing} unless on (depends_on, job, namespace) label_replace(ALERTS{alertstate="firing", cause!=""}, "depends_on", "$1", "cause", "(.*)")`;
    const healthyEnd = breakAtS > 0 ? breakAtS / 60 : minutes;
    const healthyHours = Array.from(
      { length: Math.ceil(healthyEnd / 60) },
      (_, h) => [h * 60, Math.min((h + 1) * 60, healthyEnd)] as const,
    );
    const samples: Sample[] = await evaluateRules(
      [
        {
          name: scenario.name,
          interval: `${SCRAPE_SECONDS}s`,
          input_series: promtoolSeries(scrapes),
          // promtool's engine refuses one subquery over days of 15 s steps: asked hour by hour.
          promql_expr_test: [
            ...hours.flatMap((end, h) =>
              Object.entries({ first: firing, notified }).map(([kind, alerts]) =>
                taggedQuery(
                  '0',
                  kind,
                  `min by (alertname, severity, signal, rollback) (min_over_time(timestamp(${alerts})[${end - h * 60}m:${settings.evaluationSeconds}s]))`,
                  end,
                ),
              ),
            ),
            // The healthy part's peaks of what the label-free and drift rules judge, before any break.
            ...healthyHours.flatMap(([from, to]) =>
              Object.entries(PEAKS).map(([kind, expr]) =>
                taggedQuery(
                  '0',
                  kind,
                  `max(max_over_time((${expr})[${to - from}m:${settings.evaluationSeconds}s]))`,
                  to,
                ),
              ),
            ),
          ],
        },
      ],
      { evaluationInterval: `${settings.evaluationSeconds}s`, promtool },
    );
    const first = new Map<string, AlertFiring & { at: number }>();
    const peaks = Object.fromEntries(
      Object.keys(PEAKS).map((kind) => {
        const values = samples.filter((x) => x.labels.query === kind).map((x) => x.value);
        return [kind, values.length > 0 ? Math.round(Math.max(...values) * 100) / 100 : null];
      }),
    ) as ReplayResult['healthy_peaks'];
    const notifiedNames = new Set(
      samples.filter((x) => x.labels.query === 'notified').map((x) => x.labels.alertname),
    );
    for (const s of samples) {
      if (s.labels.query !== 'first') continue;
      const name = s.labels.alertname ?? '';
      const known = first.get(name);
      if (!known || s.value < known.at)
        first.set(name, {
          alertname: name,
          severity: s.labels.severity ?? null,
          signal: s.labels.signal ?? null,
          rollback: s.labels.rollback === 'true',
          at: s.value,
          after_s: s.value - breakAtS,
          notified: notifiedNames.has(name),
        });
    }
    const alerts = [...first.values()].sort((a, b) => a.at - b.at);
    const rollbackBefore = alerts.filter((a) => a.rollback && a.at < breakAtS).map((a) => a.alertname);
    const fired = alerts.find((a) => a.rollback && a.at >= breakAtS);
    let rollback: ReplayResult['rollback'] = null;
    if (fired) {
      const webhook = await webhookToHeuristic(service, {
        alertname: fired.alertname,
        rollback: 'true',
        ...(fired.signal ? { signal: fired.signal } : {}),
      });
      rollback = {
        alertname: fired.alertname,
        signal: fired.signal,
        alert_s: fired.after_s,
        alertmanager_group_wait_s: settings.groupWaitSeconds,
        webhook_to_heuristic_s: Math.round(webhook * 100) / 100,
        to_heuristic_s: Math.round((fired.after_s + settings.groupWaitSeconds + webhook) * 10) / 10,
      };
    }
    return {
      scenario: scenario.name,
      minutes,
      predictions,
      feedback,
      alerts: alerts.map(({ at: _, ...a }) => a),
      rollback_before_break: rollbackBefore,
      rollback,
      healthy_peaks: peaks,
      elapsed_s: Math.round((performance.now() - started) / 1000),
    };
  } finally {
    await service.close();
  }
}
