/*
 * What every rule of prometheus/rules/ follows, checked by prometheus/rules.test.ts and
 * alertmanager/alertmanager.test.ts.
 */

/**
 * The labels that tell deployments apart in one Prometheus: the scrape job (compose, or a second stack), and on
 * Kubernetes the pod's namespace. Every aggregation and join of the rules keeps them, and Alertmanager groups by them.
 */
export const DEPLOYMENT_LABELS = ['job', 'namespace'] as const;

/**
 * The rule files, in the order Prometheus loads them: recording rules, the SLOs' (generated from slo/*.yaml by
 * npm run slo:generate), then the alerts that read them.
 */
export const RULE_FILES = [
  'prometheus/rules/recording.yml',
  'prometheus/rules/slo.yml',
  'prometheus/rules/alerts.yml',
] as const;

/** What each severity means: who is told, and when. Alertmanager routes on it; docs/runbook.md#severities says it. */
export const SEVERITIES = ['page', 'ticket', 'info'] as const;

/** The vocabulary of inhibition: an alert with cause=X silences those with depends_on=X of the same deployment. */
export const CAUSES = ['database', 'service-down'] as const;

/**
 * Every alert's runbook_url is this base, '#', then the alert's anchor in docs/runbook.md: the runbook on the Git
 * host of package.json's repository (github.com/owner/name: blob/HEAD follows the default branch).
 */
export function runbookBaseUrl(repository: { url: string } | string): string {
  const url = typeof repository === 'string' ? repository : repository.url;
  return `${url.replace(/^git\+/, '').replace(/\.git$/, '')}/blob/HEAD/docs/runbook.md`;
}

/** The anchors GitHub gives a Markdown file's headings (outside fenced code): lowercase, punctuation dropped. */
export function headingAnchors(markdown: string): Set<string> {
  const outsideCode = markdown.replace(/^```[\s\S]*?^```/gm, '');
  return new Set(
    [...outsideCode.matchAll(/^#{1,6} (.+)$/gm)].map((m) =>
      (m[1] as string)
        .trim()
        .toLowerCase()
        .replace(/[^\p{L}\p{N}\s_-]/gu, '')
        .replace(/\s/g, '-'),
    ),
  );
}

/** The URL path of a Grafana panel: /d/<uid>/<slug of the title>?viewPanel=<id>, as Grafana links a panel. */
export function panelPath(dashboard: { uid: string; title: string }, panelId: number): string {
  const slug = dashboard.title
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, '-')
    .replace(/^-|-$/g, '');
  return `/d/${dashboard.uid}/${slug}?viewPanel=${panelId}`;
}
