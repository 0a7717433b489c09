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
});

describe('the replay judge', () => {
  it('reads the always-firing watchdog as quiet, and any page or warning as noise', () => {
    expect(judge({ expect: 'quiet' }, result([alert('DelayWatchdog', 'none')]))).toEqual({
      met: true,
      why: 'quiet',
    });
    expect(judge({ expect: 'quiet' }, result([alert('DelayPredictionsLost', 'critical')])).met).toBe(false);
    expect(judge({ expect: 'quiet' }, result([alert('DelayModelMaeDegraded', 'warning')])).met).toBe(false);
    expect(
      judge({ expect: 'quiet', allow: 'warnings' }, result([alert('DelayModelMaeDegraded', 'warning')])).met,
    ).toBe(true);
  });
});
