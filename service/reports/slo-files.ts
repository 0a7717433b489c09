import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse } from 'yaml';
import { z } from 'zod';

/*
 * The service level objectives of slo/*.yaml (Sloth's prometheus/v1 spec), read by what renders them into rules
 * (prometheus/slo-generate.ts), what draws them (grafana/build) and what reports on them (the daily report).
 */

export const SLO_DIR = 'slo';
/** The budget's window (Sloth's default). */
export const SLO_PERIOD = '30d';

const sloFile = z.object({
  version: z.literal('prometheus/v1'),
  service: z.string(),
  labels: z.record(z.string(), z.string()).default({}),
  slos: z.array(
    z.object({
      name: z.string().regex(/^[a-z][a-z0-9-]*$/),
      objective: z.number().gt(0).lt(100),
      description: z.string(),
      sli: z.object({
        events: z.object({
          error_query: z.string().includes('{{.window}}'),
          total_query: z.string().includes('{{.window}}'),
        }),
      }),
      alerting: z.object({
        name: z.string(),
        labels: z.record(z.string(), z.string()).default({}),
        annotations: z.record(z.string(), z.string()),
        page_alert: z.object({ labels: z.object({ severity: z.literal('page') }) }),
        ticket_alert: z.object({ labels: z.object({ severity: z.literal('ticket') }) }),
      }),
    }),
  ),
});
export type SloFile = z.infer<typeof sloFile>;

export function readSlos(dir = SLO_DIR): SloFile[] {
  return readdirSync(dir)
    .filter((f) => f.endsWith('.yaml'))
    .sort()
    .map((f) => sloFile.parse(parse(readFileSync(join(dir, f), 'utf8'))));
}

/** The budget as a ratio of events, printed without float noise (99.9 -> 0.001). */
export const budget = (objective: number) => Number((1 - objective / 100).toPrecision(6));

/** An SLO's SLI as errors over total for `window`, 0 where nothing failed (as prometheus/rules/slo.yml writes it). */
export function errorRatioOver(slo: SloFile['slos'][number], window: string): string {
  const at = (q: string) => q.replaceAll('{{.window}}', window);
  const { error_query, total_query } = slo.sli.events;
  return `((${at(error_query)}) or 0 * (${at(total_query)})) / (${at(total_query)})`;
}

/** The share of an SLO's budget over SLO_PERIOD not yet spent: 1 untouched, below 0 missed. */
export const budgetLeftQuery = (slo: SloFile['slos'][number]) =>
  `1 - (${errorRatioOver(slo, SLO_PERIOD)}) / ${budget(slo.objective)}`;
