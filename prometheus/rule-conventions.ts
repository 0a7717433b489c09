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
