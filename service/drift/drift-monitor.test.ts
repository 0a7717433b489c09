import { describe, expect, it } from 'vitest';
import { FEATURE_NAMES } from '../features/booking-features.js';
import { testMetrics } from '../test-support/harness.js';
import { createDriftMonitor, DRIFT_FEATURES } from './drift-monitor.js';

const vectorWith = (values: Record<string, number>) => FEATURE_NAMES.map((name) => values[name] ?? 0);

describe('drift monitor', () => {
  it("counts served values into the baseline's training bins, with the trainer's edge rule", async () => {
    const m = testMetrics();
    const drift = createDriftMonitor(m.metrics);
    drift.observe([vectorWith({ distance_km: 5 })], ['api']); // no baseline yet: nothing counted
    drift.setBaseline({
      model_version: 'gbt-v2',
      features: [
        { name: 'distance_km', bin_edges: [2, 6], baseline_ratios: [0.3, 0.4, 0.3] },
        { name: 'hour_local', bin_edges: [12], baseline_ratios: [0.5, 0.5] },
      ],
    });
    drift.observe(
      [1, 2, 2.5, 6, 6.1, 40].map((d) => vectorWith({ distance_km: d, hour_local: 8 })),
      ['api', 'cache', 'default', 'disabled', 'api', 'api'],
    );
    expect(await m.value('delay.features.observations', { feature: 'distance_km', bin: '0' })).toBe(2);
    expect(await m.value('delay.features.observations', { feature: 'distance_km', bin: '1' })).toBe(2);
    expect(await m.value('delay.features.observations', { feature: 'distance_km', bin: '2' })).toBe(2);
    expect(await m.value('delay.features.observations', { feature: 'hour_local' })).toBe(0);
    expect(await m.value('delay.features.baseline_ratio', { feature: 'distance_km', bin: '1' })).toBe(0.4);
    expect(drift.baselineVersion()).toBe('gbt-v2');
  });

  it('counts weather features only where the weather was measured, not where defaults stood in', async () => {
    const m = testMetrics();
    const drift = createDriftMonitor(m.metrics);
    drift.setBaseline({
      model_version: 'gbt-v2',
      features: [
        { name: 'distance_km', bin_edges: [6], baseline_ratios: [0.5, 0.5] },
        { name: 'temperature_c', bin_edges: [10], baseline_ratios: [0.5, 0.5] },
      ],
    });
    drift.observe(
      [5, 20, 12, 12].map((t) => vectorWith({ distance_km: 3, temperature_c: t })),
      ['api', 'cache', 'default', 'disabled'],
    );
    expect(await m.value('delay.features.observations', { feature: 'distance_km' })).toBe(4);
    expect(await m.value('delay.features.observations', { feature: 'temperature_c', bin: '0' })).toBe(1);
    expect(await m.value('delay.features.observations', { feature: 'temperature_c', bin: '1' })).toBe(1);
  });

  it('keeps each (feature, bin) count growing across a baseline switch, and skips a feature with mismatched bins', async () => {
    const m = testMetrics();
    const drift = createDriftMonitor(m.metrics);
    const count = (bin: string) => m.value('delay.features.observations', { feature: 'distance_km', bin });
    drift.setBaseline({
      model_version: 'gbt-v2',
      features: [{ name: 'distance_km', bin_edges: [6], baseline_ratios: [0.5, 0.5] }],
    });
    drift.observe([vectorWith({ distance_km: 3 }), vectorWith({ distance_km: 9 })], ['api', 'api']);
    drift.setBaseline({
      model_version: 'gbt-v3',
      features: [
        { name: 'distance_km', bin_edges: [2, 8], baseline_ratios: [0.2, 0.5, 0.3] },
        { name: 'driver_active_bookings', bin_edges: [1, 2], baseline_ratios: [1] },
      ],
    });
    drift.observe([vectorWith({ distance_km: 3, driver_active_bookings: 5 })], ['api']);

    expect([await count('0'), await count('1'), await count('2')]).toEqual([1, 2, 0]);
    expect(await m.value('delay.features.observations', { feature: 'driver_active_bookings' })).toBe(0);
    expect(drift.baselineVersion()).toBe('gbt-v3');
  });

  it("adds each observation's moment shares to the expected counts: its hour of the week, its month for weather", async () => {
    const m = testMetrics();
    const drift = createDriftMonitor(m.metrics);
    drift.setBaseline({
      model_version: 'gbt-v2',
      features: [
        {
          name: 'driver_active_bookings',
          bin_edges: [1],
          baseline_ratios: [0.5, 0.5],
          moments: { 'weekday 08': [0.2, 0.8], 'weekday 03': [0.9, 0.1] },
        },
        {
          name: 'temperature_c',
          bin_edges: [10],
          baseline_ratios: [0.5, 0.5],
          moments: { '01': [0.75, 0.25] },
        },
      ],
    });
    drift.observe(
      [
        vectorWith({ hour_local: 8.5, month: 1, driver_active_bookings: 3, temperature_c: 2 }),
        vectorWith({ hour_local: 3.2, month: 1, driver_active_bookings: 0, temperature_c: 4 }),
        // Saturday 08:00 has no moment of its own in this card: the year's shares stand in.
        vectorWith({
          hour_local: 8.5,
          is_weekend: 1,
          month: 7,
          driver_active_bookings: 0,
          temperature_c: 25,
        }),
      ],
      ['api', 'api', 'api'],
    );
    const expected = (feature: string, bin: string) => m.value('delay.features.expected', { feature, bin });
    expect(await expected('driver_active_bookings', '0')).toBeCloseTo(0.2 + 0.9 + 0.5, 6);
    expect(await expected('driver_active_bookings', '1')).toBeCloseTo(0.8 + 0.1 + 0.5, 6);
    expect(await expected('temperature_c', '0')).toBeCloseTo(0.75 + 0.75 + 0.5, 6);
    expect(await expected('temperature_c', '1')).toBeCloseTo(0.25 + 0.25 + 0.5, 6);
    // Observed and expected add up to the same number of bookings.
    expect(
      (await m.value('delay.features.observations', { feature: 'driver_active_bookings', bin: '0' })) +
        (await m.value('delay.features.observations', { feature: 'driver_active_bookings', bin: '1' })),
    ).toBe(3);
  });

  it('leaves calendar features out', () => {
    for (const calendar of ['hour_local', 'day_of_week', 'is_weekend', 'month']) {
      expect(DRIFT_FEATURES).not.toContain(calendar);
    }
  });
});
