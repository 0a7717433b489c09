import { monitorEventLoopDelay } from 'node:perf_hooks';
import type { Meter } from '@opentelemetry/api';

/**
 * Event-loop delay and resident memory of this process. The delay histogram is read and reset every
 * `windowMs`, so the gauges show the last complete window: a stalled loop shows within one window, and a
 * scrape never resets what another scraper reads.
 */
const RESOLUTION_MS = 10;

export function startRuntimeMetrics(meter: Meter, { windowMs = 5000 }: { windowMs?: number } = {}) {
  const histogram = monitorEventLoopDelay({ resolution: RESOLUTION_MS });
  histogram.enable();
  // The histogram records whole sampling intervals: the delay is what exceeds the resolution.
  const delay = (ns: number) => Math.max(0, ns / 1e9 - RESOLUTION_MS / 1000);
  let last = { p50: 0, p99: 0, max: 0 };
  const timer = setInterval(() => {
    last = {
      p50: delay(histogram.percentile(50)),
      p99: delay(histogram.percentile(99)),
      max: delay(histogram.max),
    };
    histogram.reset();
  }, windowMs);
  timer.unref();

  meter
    .createObservableGauge('delay.process.event_loop_delay', {
      description: `Event-loop delay over the last ${windowMs / 1000} s window, by stat (p50, p99, max)`,
      unit: 's',
    })
    .addCallback((result) => {
      result.observe(last.p50, { stat: 'p50' });
      result.observe(last.p99, { stat: 'p99' });
      result.observe(last.max, { stat: 'max' });
    });
  meter
    .createObservableGauge('delay.process.resident_memory', {
      description: 'Resident set size of the process',
      unit: 'By',
    })
    .addCallback((result) => result.observe(process.memoryUsage.rss()));

  return {
    stop() {
      clearInterval(timer);
      histogram.disable();
    },
  };
}
