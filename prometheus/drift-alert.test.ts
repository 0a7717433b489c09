import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import type { DriftBaseline } from '../service/domain/drift-baseline.js';
import { monitoringBinaries } from '../service/test-support/monitoring.js';
import { simulateDriftAlert } from './drift-alert-simulation.js';

const hasPromtool = monitoringBinaries('promtool');

const card = JSON.parse(readFileSync('models/gbt-v1.json', 'utf8')) as {
  version: string;
  drift: DriftBaseline;
};
const baseline = { ...card.drift, model_version: card.version };

describe.skipIf(!hasPromtool)('the drift alert on generator traffic at 10 predictions/s (promtool)', () => {
  it('stays quiet on undrifted traffic and fires within 5 minutes of a shift, naming the shifted features', () => {
    const [steady, rain, trips] = simulateDriftAlert({
      baseline,
      seed: 77,
      scenarios: [
        { name: 'undrifted', phases: [{ minutes: 120 }] },
        { name: 'rain', phases: [{ minutes: 20 }, { minutes: 15, season: { rainFactor: 2 } }] },
        { name: 'trips', phases: [{ minutes: 20 }, { minutes: 15, season: { tripFactor: 1.5 } }] },
      ],
    });
    expect(steady?.windows).toBe(12);
    expect(steady?.firingWindows).toBe(0);
    expect(Object.keys(steady?.maxPsi ?? {})).toHaveLength(9);
    expect(Math.max(...Object.values(steady?.maxPsi ?? {}))).toBeLessThan(0.1);

    const shift = 20 * 60;
    expect(Object.keys(rain?.firstFiring ?? {})).toContain('precipitation_mm_h');
    expect(Math.min(...Object.values(rain?.firstFiring ?? {}))).toBeGreaterThan(shift);
    expect(Math.min(...Object.values(rain?.firstFiring ?? {}))).toBeLessThanOrEqual(shift + 300);
    expect(Object.keys(trips?.firstFiring ?? {}).sort()).toEqual(['distance_km', 'estimated_duration_min']);
    expect(Math.min(...Object.values(trips?.firstFiring ?? {}))).toBeLessThanOrEqual(shift + 300);
  });
});
