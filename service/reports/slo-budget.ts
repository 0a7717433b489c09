import type { SloBudget } from './report-schemas.js';
import { budgetLeftQuery, readSlos, SLO_PERIOD, type SloFile } from './slo-files.js';

/** How long Prometheus may take to answer the daily report's budget queries. */
export const SLO_QUERY_TIMEOUT_MS = 10_000;

interface PromVector {
  status: string;
  error?: string;
  data?: { resultType: string; result: { metric: Record<string, string>; value: [number, string] }[] };
}

/**
 * The share of each SLO's SLO_PERIOD budget not yet spent, from the Prometheus that scrapes the service: one entry
 * per deployment (job, namespace) the SLI's query returns. An SLO Prometheus has no traffic for answers null; a
 * Prometheus that does not answer gives the reason in `error`, so the report still goes out.
 */
export async function sloBudgetLeft(
  prometheusUrl: string,
  { slos = readSlos(), fetchImpl = fetch }: { slos?: SloFile[]; fetchImpl?: typeof fetch } = {},
): Promise<SloBudget[]> {
  const entries: SloBudget[] = [];
  for (const slo of slos.flatMap((file) => file.slos)) {
    const base = { slo: slo.name, objective: slo.objective, period: SLO_PERIOD };
    try {
      const url = new URL('api/v1/query', prometheusUrl.endsWith('/') ? prometheusUrl : `${prometheusUrl}/`);
      url.searchParams.set('query', budgetLeftQuery(slo));
      const res = await fetchImpl(url, { signal: AbortSignal.timeout(SLO_QUERY_TIMEOUT_MS) });
      const body = (await res.json()) as PromVector;
      if (!res.ok || body.status !== 'success' || !body.data)
        throw new Error(`Prometheus answered ${res.status}: ${body.error ?? body.status}`);
      if (body.data.result.length === 0) entries.push({ ...base, deployment: null, budget_left: null });
      for (const series of body.data.result) {
        const value = Number(series.value[1]);
        entries.push({
          ...base,
          deployment: [series.metric.namespace, series.metric.job].filter(Boolean).join('/') || null,
          budget_left: Number.isFinite(value) ? Math.round(value * 10_000) / 10_000 : null,
        });
      }
    } catch (err) {
      entries.push({ ...base, deployment: null, budget_left: null, error: (err as Error).message });
    }
  }
  return entries;
}
