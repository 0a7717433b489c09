import { PrometheusExporter } from '@opentelemetry/exporter-prometheus';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { MeterProvider } from '@opentelemetry/sdk-metrics';

/** Metrics on their own port (`/metrics`), so scraping never competes with the API's routes. */
export async function startMetricsExporter({ port, host }: { port: number; host: string }) {
  const exporter = new PrometheusExporter({ port, host, preventServerStart: true });
  await exporter.startServer();
  const provider = new MeterProvider({
    readers: [exporter],
    resource: resourceFromAttributes({ 'service.name': 'delay-prediction' }),
  });
  return {
    meter: provider.getMeter('delay-prediction-service'),
    async shutdown() {
      await provider.shutdown();
    },
  };
}
