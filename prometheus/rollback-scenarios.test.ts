import { describe, expect, it } from 'vitest';
import type { ReplayResult } from './rollback-replay.js';
import { judge } from './rollback-scenarios.js';

const result = (alerts: ReplayResult['alerts']): ReplayResult => ({
  scenario: 'judged',
  minutes: 60,
  predictions: 1,
  feedback: 1,
  alerts,
  rollback_before_break: [],
  rollback: null,
  healthy_peaks: {
    shadow_departure_abs: null,
    shadow_departure_signed_high: null,
    shadow_departure_signed_low: null,
    shadow_gap_raw: null,
    booking_feature_psi: null,
  },
  elapsed_s: 1,
});
const alert = (alertname: string, severity: string) => ({
  alertname,
  severity,
  signal: null,
  rollback: false,
  after_s: 0,
  notified: true,
});

describe('the replay judge', () => {
  it('reads the always-firing watchdog as quiet, and any page or ticket as noise', () => {
    expect(judge({ expect: 'quiet' }, result([alert('DelayWatchdog', 'info')]))).toEqual({
      met: true,
      why: 'quiet',
    });
    expect(judge({ expect: 'quiet' }, result([alert('DelayPredictionsLost', 'page')])).met).toBe(false);
    expect(judge({ expect: 'quiet' }, result([alert('DelayModelMaeDegraded', 'ticket')])).met).toBe(false);
    expect(
      judge({ expect: 'quiet', allow: 'tickets' }, result([alert('DelayModelMaeDegraded', 'ticket')])).met,
    ).toBe(true);
  });
});
