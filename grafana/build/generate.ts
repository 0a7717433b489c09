import { readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { DEFAULT_DEPLOYMENT, type Deployment } from './board.js';
import { buildDashboards } from './boards.js';

/*
 * npm run dashboards: writes grafana/dashboards/*.json, the boards Grafana provisions, from grafana/build/boards.ts.
 * npm run dashboards -- --check: writes nothing, names the files that differ from what it would write and exits 1.
 */

export const DASHBOARDS_DIR = 'grafana/dashboards';

/** Each board's file name and its JSON text, as committed. */
export function renderDashboards(deployment: Deployment = DEFAULT_DEPLOYMENT): Record<string, string> {
  return Object.fromEntries(
    Object.entries(buildDashboards(deployment)).map(([key, json]) => [
      `${key}.json`,
      `${JSON.stringify(json, null, 2)}\n`,
    ]),
  );
}

/** The files of `dir` that differ from the rendered boards: changed, missing, or a board no longer built. */
export function staleFiles(dir = DASHBOARDS_DIR, rendered = renderDashboards()): string[] {
  const present = readdirSync(dir).filter((f) => f.endsWith('.json'));
  const changed = Object.entries(rendered)
    .filter(([file, text]) => !present.includes(file) || readFileSync(join(dir, file), 'utf8') !== text)
    .map(([file]) => file);
  return [...changed, ...present.filter((f) => !(f in rendered))].sort();
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const rendered = renderDashboards();
  const stale = staleFiles(DASHBOARDS_DIR, rendered);
  if (process.argv.includes('--check')) {
    if (stale.length > 0) {
      console.error(
        `${DASHBOARDS_DIR} differs from grafana/build for ${stale.join(', ')}: run npm run dashboards`,
      );
      process.exit(1);
    }
    console.log(`${DASHBOARDS_DIR} is as grafana/build writes it`);
  } else {
    for (const file of stale)
      if (file in rendered) writeFileSync(join(DASHBOARDS_DIR, file), rendered[file] as string);
      else rmSync(join(DASHBOARDS_DIR, file));
    console.log(
      `wrote ${Object.keys(rendered).length} boards to ${DASHBOARDS_DIR} (${stale.length} changed)`,
    );
  }
}
