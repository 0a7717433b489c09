import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';

describe('README', () => {
  const readme = readFileSync('README.md', 'utf8');

  it('documents every variable the config module reads', () => {
    const config = readFileSync('service/config/config.ts', 'utf8');
    const variables = [...config.matchAll(/^ {2}([A-Z][A-Z0-9_]+):/gm)].map((m) => m[1] as string);
    expect(variables.length).toBeGreaterThan(20);
    for (const variable of variables) expect(readme, variable).toContain(`| \`${variable}\` |`);
  });

  it('names the two commands a newcomer needs, and the scripts it mentions exist', () => {
    expect(readme).toContain('npm ci && npm start');
    expect(readme).toContain('npm test');
    const scripts = Object.keys(JSON.parse(readFileSync('package.json', 'utf8')).scripts);
    for (const [, script] of readme.matchAll(/npm run ([a-z:-]+)/g))
      expect(scripts, script).toContain(script);
    expect(readFileSync('.ci/run', 'utf8')).toContain('npm test');
  });
});
