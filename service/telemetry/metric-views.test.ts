import { spawnSync } from 'node:child_process';
import { PrometheusExporter, PrometheusSerializer } from '@opentelemetry/exporter-prometheus';
import { MeterProvider } from '@opentelemetry/sdk-metrics';
import { describe, expect, it } from 'vitest';
import { METRIC_VIEWS } from './otel.js';

/** What /metrics shows when both the http and the undici instrumentations timed an outgoing request. */
async function scrapeAfterBothRecorded(views = METRIC_VIEWS) {
  const exporter = new PrometheusExporter({ preventServerStart: true });
  const provider = new MeterProvider({ readers: [exporter], views });
  for (const scope of ['@opentelemetry/instrumentation-http', '@opentelemetry/instrumentation-undici'])
    provider
      .getMeter(scope)
      .createHistogram('http.client.request.duration', { unit: 's' })
      .record(0.1, { 'http.request.method': 'GET', 'server.address': '127.0.0.1' });
  const { resourceMetrics } = await exporter.collect();
  await provider.shutdown();
  return new PrometheusSerializer().serialize(resourceMetrics);
}
const lint = (text: string) => spawnSync('promtool', ['check', 'metrics'], { input: text, encoding: 'utf8' });

describe('outgoing request durations on /metrics', () => {
  it('are one family, fetch timed by the undici instrumentation, and pass promtool', async () => {
    const text = await scrapeAfterBothRecorded();
    expect(text.match(/^# TYPE http_client_request_duration histogram$/gm)).toHaveLength(1);
    expect(text).toMatch(
      /http_client_request_duration_count\{[^}]*otel_scope_name="@opentelemetry\/instrumentation-undici"[^}]*\} 1/,
    );
    const result = lint(text);
    if (result.error && process.env.CI !== 'true')
      console.warn('skipping promtool check metrics: promtool not found');
    else expect(result.status, result.stdout + result.stderr).toBe(0);
  });

  it('would be two families of one name without the view, which promtool refuses', async () => {
    const result = lint(await scrapeAfterBothRecorded([]));
    if (result.error && process.env.CI !== 'true')
      console.warn('skipping promtool check metrics: promtool not found');
    else expect(result.stdout + result.stderr).toContain('second HELP line');
  });
});
