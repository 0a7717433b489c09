import { type DayInfo, daysThatMatter } from '../models/traffic.js';
import type { ReplayPhase, ReplayResult, ReplayScenario } from './rollback-replay.js';

/**
 * The scenarios of `npm run measure:rollback` and their aims (issue 16; docs/adr/0007-rollback-policy.md).
 * Traffic: 4 predictions/s, gbt-v2 at 50% (2 ML predictions/s), feedback on a quarter of the bookings (about
 * 0.5 ML feedbacks/s), 30 s after the prediction unless a scenario says otherwise; 40 minutes of healthy
 * history before every break, at the break's traffic.
 */
/** Quiet: no alert at all; or, as `allow` says, tickets to the team, or pages too, but no rollback. */
export type Aim = { expect: 'rollback'; within_s: number } | { expect: 'quiet'; allow?: 'tickets' | 'pages' };

export interface MeasuredScenario extends ReplayScenario {
  aim: Aim;
}

/** 40 minutes of healthy gbt-v2 at the break's traffic and feedback delay, then the break. */
const afterHistory = (name: string, aim: Aim, broken: ReplayPhase): MeasuredScenario => {
  const { feedbackDelaySeconds, predictionsPerSecond } = broken;
  return {
    name,
    aim,
    breakPhase: 1,
    phases: [
      {
        minutes: 40,
        ...(feedbackDelaySeconds ? { feedbackDelaySeconds } : {}),
        ...(predictionsPerSecond ? { predictionsPerSecond } : {}),
      },
      broken,
    ],
  };
};

export function rollbackScenarios({ healthyHours = 72 }: { healthyHours?: number } = {}): MeasuredScenario[] {
  const NINE_OFF = { offsetMinutes: 9 };
  return [
    afterHistory(
      'new version 9 min off at 50%, feedback after 30 s',
      { expect: 'rollback', within_s: 180 },
      { minutes: 15, modelVersion: 'gbt-v3', model: NINE_OFF },
    ),
    afterHistory(
      'new version 9 min off at 50%, feedback after 60 min',
      { expect: 'rollback', within_s: 180 },
      { minutes: 15, modelVersion: 'gbt-v3', model: NINE_OFF, feedbackDelaySeconds: 3600 },
    ),
    afterHistory(
      'same version, MAE 1.6 -> 9',
      { expect: 'rollback', within_s: 180 },
      { minutes: 15, model: NINE_OFF },
    ),
    afterHistory(
      'every ML booking falls back (model errors)',
      { expect: 'rollback', within_s: 90 },
      { minutes: 10, model: { fails: true } },
    ),
    afterHistory(
      'storm: both arms miss alike (truth = served + N(0, 8 min))',
      { expect: 'quiet', allow: 'tickets' },
      { minutes: 60, truth: 'storm' },
    ),
    afterHistory(
      'gradual degradation: 0 -> 9 min off over 60 min',
      // The model loses to the rules from about 3 min off; rolled back before it is 6 min off.
      { expect: 'rollback', within_s: 2400 },
      { minutes: 60, model: { offsetMinutes: (minute) => (9 * minute) / 60 } },
    ),
    afterHistory(
      'ML path 150 ms slower (latency regression of the model only)',
      { expect: 'rollback', within_s: 300 },
      { minutes: 15, model: { delayMs: 150 } },
    ),
    afterHistory(
      'severe feature drift: trips 3 times longer',
      { expect: 'rollback', within_s: 1200 },
      { minutes: 30, season: { tripFactor: 3 } },
    ),
    afterHistory(
      'twice the rain: weather drift the model was trained for',
      // DelayFeatureDrift pages (the inputs moved); nothing rolls back: the model still beats the rules.
      { expect: 'quiet', allow: 'pages' },
      { minutes: 30, season: { rainFactor: 2 } },
    ),
    afterHistory(
      'new version 9 min off at 0.2 predictions/s: below every sample guard',
      { expect: 'quiet' },
      { minutes: 30, modelVersion: 'gbt-v3', model: NINE_OFF, predictionsPerSecond: 0.2 },
    ),
    { name: 'healthy, 2 h', aim: { expect: 'quiet' }, phases: [{ minutes: 120 }] },
    {
      name: `healthy, ${healthyHours} h, heavy-tailed actual delays (rush-hour incidents, Student-t noise)`,
      // Heavier tails put ML's MAE above the manual's 2.5-minute target: the ticket may tell the team.
      aim: { expect: 'quiet', allow: 'tickets' },
      phases: [{ minutes: healthyHours * 60, truth: 'heavy_tailed' }],
    },
  ];
}

const WEEKDAY = ['Sunday', 'Monday', 'Tuesday', 'Wednesday', 'Thursday', 'Friday', 'Saturday'];
const describeDay = (d: DayInfo) =>
  `${d.wet ? 'wet' : 'dry'} ${WEEKDAY[d.weekday]} ${d.date}, ${d.temperatureMean.toFixed(0)} °C`;
const clock = (hour: number) =>
  `${String(Math.floor(hour)).padStart(2, '0')}:${String(Math.round((hour % 1) * 60)).padStart(2, '0')}`;

/** Where breaks are injected: 40 minutes of healthy history, then the break at the morning peak or at night. */
export const BREAK_MOMENTS = { 'morning rush': 7.75, night: 3 } as const;
export type BreakMoment = keyof typeof BREAK_MOMENTS;

/** A break at `moment` of `day`, after 40 minutes of healthy time-ordered traffic. */
const timedBreak = (
  day: DayInfo,
  moment: BreakMoment,
  name: string,
  aim: Aim,
  broken: ReplayPhase,
): MeasuredScenario => {
  const at = BREAK_MOMENTS[moment];
  return {
    name: `${name}, at ${moment} (${clock(at)}, ${describeDay(day)})`,
    aim,
    start: { day: day.date, hour: at - 40 / 60 },
    breakPhase: 1,
    phases: [
      {
        minutes: 40,
        ...(broken.feedbackDelaySeconds ? { feedbackDelaySeconds: broken.feedbackDelaySeconds } : {}),
      },
      broken,
    ],
  };
};

/**
 * Traffic in time order (issue 27; docs/adr/0007-rollback-policy.md): healthy days replayed hour by hour, with
 * nothing rolled back and nobody paged, and every break injected at the morning rush and at night rolled back
 * within its aim. Four predictions/s on average over a day (the demand curve gives about 7 at the peaks and 1 at
 * night), gbt-v2 at 50%, feedback on a quarter of the bookings 30 s after the prediction unless a row says
 * otherwise. `healthyHours` under 24 replays each healthy day from 06:00 for that long (the morning rush).
 */
export function timeOrderedScenarios({
  seed = 1,
  healthyHours = 24,
  moments = Object.keys(BREAK_MOMENTS) as BreakMoment[],
}: {
  seed?: number;
  healthyHours?: number;
  moments?: BreakMoment[];
} = {}): MeasuredScenario[] {
  const days = daysThatMatter(seed);
  const NINE_UP = { offsetMinutes: 9 };
  const NINE_DOWN = { offsetMinutes: -9 };
  // Healthy days: quiet; a ticket may tell the team something, a page may not.
  const healthy = (day: DayInfo): MeasuredScenario => {
    const whole = healthyHours >= 24;
    return {
      name: `healthy ${describeDay(day)}, ${whole ? '24 h' : `${clock(6)}-${clock(6 + healthyHours)}`} in time order`,
      aim: { expect: 'quiet', allow: 'tickets' },
      start: { day: day.date, hour: whole ? 0 : 6 },
      phases: [{ minutes: Math.min(healthyHours, 24) * 60 }],
    };
  };
  const breaks = (day: DayInfo, moment: BreakMoment): MeasuredScenario[] => [
    timedBreak(
      day,
      moment,
      'new version 9 min too high',
      { expect: 'rollback', within_s: 180 },
      {
        minutes: 15,
        modelVersion: 'gbt-v3',
        model: NINE_UP,
      },
    ),
    timedBreak(
      day,
      moment,
      'new version 9 min too low',
      { expect: 'rollback', within_s: 180 },
      {
        minutes: 15,
        modelVersion: 'gbt-v3',
        model: NINE_DOWN,
      },
    ),
    timedBreak(
      day,
      moment,
      'new version 9 min too high, feedback after 60 min',
      { expect: 'rollback', within_s: 180 },
      { minutes: 15, modelVersion: 'gbt-v3', model: NINE_UP, feedbackDelaySeconds: 3600 },
    ),
    timedBreak(
      day,
      moment,
      'same version jumps 9 min',
      { expect: 'rollback', within_s: 180 },
      {
        minutes: 15,
        model: NINE_UP,
      },
    ),
    timedBreak(
      day,
      moment,
      'every ML booking falls back (model errors)',
      { expect: 'rollback', within_s: 90 },
      {
        minutes: 10,
        model: { fails: true },
      },
    ),
    timedBreak(
      day,
      moment,
      'ML path 150 ms slower (latency regression of the model only)',
      { expect: 'rollback', within_s: 300 },
      { minutes: 15, model: { delayMs: 150 } },
    ),
    timedBreak(
      day,
      moment,
      'severe feature drift: trips 3 times longer',
      { expect: 'rollback', within_s: 1200 },
      {
        minutes: 30,
        season: { tripFactor: 3 },
      },
    ),
    timedBreak(
      day,
      moment,
      'gradual degradation: 0 -> 9 min off over 60 min',
      { expect: 'rollback', within_s: 2400 },
      { minutes: 60, model: { offsetMinutes: (minute) => (9 * minute) / 60 } },
    ),
  ];
  return [
    healthy(days.wetWinterWeekday),
    healthy(days.drySummerWeekday),
    healthy(days.dryWeekendDay),
    ...moments.flatMap((m) => breaks(days.wetWinterWeekday, m)),
    timedBreak(
      days.wetWinterWeekday,
      'morning rush',
      'storm: both arms miss alike (truth = served + N(0, 8 min))',
      { expect: 'quiet', allow: 'tickets' },
      { minutes: 60, truth: 'storm' },
    ),
    timedBreak(
      days.wetWinterWeekday,
      'morning rush',
      'twice the rain',
      { expect: 'quiet', allow: 'tickets' },
      { minutes: 60, season: { rainFactor: 2 } },
    ),
  ];
}

/** `npm run measure:rollback`'s defaults: healthy days of 24 h, 2 h of shuffled healthy traffic, traffic seed 1. */
export const MEASURE_DEFAULTS = { hours: 24, shuffledHours: 2, seed: 1 } as const;

/** Every scenario `npm run measure:rollback` runs, in its order: the time-ordered ones, then the shuffled extras. */
export function measuredScenarios({
  hours = MEASURE_DEFAULTS.hours,
  shuffledHours = MEASURE_DEFAULTS.shuffledHours,
  seed = MEASURE_DEFAULTS.seed,
}: {
  hours?: number;
  shuffledHours?: number;
  seed?: number;
} = {}) {
  return [
    ...timeOrderedScenarios({ seed, healthyHours: hours }).map((s) => ({ ...s, order: 'time' as const })),
    ...(shuffledHours > 0
      ? rollbackScenarios({ healthyHours: shuffledHours }).map((s) => ({ ...s, order: 'shuffled' as const }))
      : []),
  ];
}

/** An aim as the measure's Markdown table says it (docs/rollout-and-rollback.md holds the last table). */
export const aimText = (aim: Aim) => (aim.expect === 'rollback' ? `<= ${aim.within_s} s` : 'no rollback');

/** Whether a replay met its scenario's aim, and why not. */
export function judge(aim: Aim, result: ReplayResult): { met: boolean; why: string } {
  if (result.rollback_before_break.length > 0)
    return {
      met: false,
      why: `rolled back during the healthy history: ${result.rollback_before_break.join(', ')}`,
    };
  if (aim.expect === 'rollback') {
    if (!result.rollback) return { met: false, why: 'never rolled back' };
    return result.rollback.to_heuristic_s <= aim.within_s
      ? { met: true, why: `${result.rollback.to_heuristic_s} s <= ${aim.within_s} s` }
      : { met: false, why: `${result.rollback.to_heuristic_s} s > ${aim.within_s} s` };
  }
  if (result.rollback) return { met: false, why: `rolled back by ${result.rollback.alertname}` };
  // Severity info (the watchdog, which always fires) reaches no person: not a page, not a ticket.
  const paged = result.alerts.filter(
    (a) =>
      a.severity !== 'info' && aim.allow !== 'pages' && (aim.allow !== 'tickets' || a.severity !== 'ticket'),
  );
  return paged.length === 0
    ? { met: true, why: 'quiet' }
    : { met: false, why: `fired ${paged.map((a) => a.alertname).join(', ')}` };
}
