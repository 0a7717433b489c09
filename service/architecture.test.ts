import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, normalize, relative } from 'node:path';
import { describe, expect, it } from 'vitest';

/*
 * Imports run one way, from the HTTP edge down to the domain (docs/architecture.md): a module imports from its
 * own layer or a lower one. Tests and the test support may import anything.
 */
const LAYERS: Record<string, number> = {
  domain: 0,
  async: 0,
  config: 1,
  privacy: 1,
  telemetry: 2,
  cache: 3,
  features: 3,
  predictors: 3,
  weather: 3,
  models: 3,
  drift: 3,
  storage: 3,
  flags: 3,
  predictions: 4,
  feedback: 4,
  reports: 4,
  rollout: 4,
  retraining: 4,
  http: 5,
  routes: 5,
  'app.ts': 6,
  'compose.ts': 7,
  'server.ts': 8,
  'main.ts': 9,
  cli: 9,
};

function sources(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const path = join(dir, e.name);
    if (e.isDirectory()) return e.name === 'test-support' ? [] : sources(path);
    return e.name.endsWith('.ts') && !e.name.endsWith('.test.ts') ? [path] : [];
  });
}

const layerOf = (path: string) => {
  const top = relative('service', path).split('/')[0] as string;
  const layer = LAYERS[top];
  if (layer === undefined) throw new Error(`${path}: service/${top} has no layer in LAYERS`);
  return layer;
};

describe('the service imports one way', () => {
  const files = sources('service');

  it('gives every folder of service/ a layer', () => {
    for (const file of files) expect(() => layerOf(file)).not.toThrow();
  });

  it('imports only from the same layer or below; the domain imports nothing but itself', () => {
    const upward: string[] = [];
    for (const file of files) {
      const text = readFileSync(file, 'utf8');
      for (const [, spec] of text.matchAll(/^import[^']*'(\.[^']+)';$/gm)) {
        const target = normalize(join(dirname(file), spec as string)).replace(/\.js$/, '.ts');
        if (!target.startsWith('service/')) {
          if (layerOf(file) === 0) upward.push(`${file} -> ${target}`);
          continue;
        }
        if (layerOf(target) > layerOf(file)) upward.push(`${file} -> ${target}`);
      }
      if (layerOf(file) === 0 && /^import .* from '(?!\.)/m.test(text)) upward.push(`${file} -> a package`);
    }
    expect(upward).toEqual([]);
  });
});
