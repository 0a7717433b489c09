import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';

describe('README and the reference pages it leads to', () => {
  it('documents in docs/configuration.md every variable the config module reads', () => {
    const settings = readFileSync('docs/configuration.md', 'utf8');
    const config = readFileSync('service/config/config.ts', 'utf8');
    const variables = [...config.matchAll(/^ {2}([A-Z][A-Z0-9_]+):/gm)].map((m) => m[1] as string);
    expect(variables.length).toBeGreaterThan(20);
    for (const variable of variables) expect(settings, variable).toContain(`| \`${variable}\` |`);
  });

  it('names the two commands a newcomer needs, and the scripts it mentions exist', () => {
    const readme = readFileSync('README.md', 'utf8');
    expect(readme).toContain('npm ci && npm start');
    expect(readme).toContain('npm test');
    const scripts = Object.keys(JSON.parse(readFileSync('package.json', 'utf8')).scripts);
    for (const [, script] of readme.matchAll(/npm run ([a-z0-9:-]+)/g))
      expect(scripts, script).toContain(script);
    expect(readFileSync('.ci/run', 'utf8')).toContain('npm test');
  });

  it('lists in the layout of docs/architecture.md only paths that exist, and every folder of service/', () => {
    const architecture = readFileSync('docs/architecture.md', 'utf8');
    const layout = architecture.slice(architecture.indexOf('## Layout'));
    const block = layout.slice(
      layout.indexOf('```\n') + 4,
      layout.indexOf('\n```', layout.indexOf('```\n') + 4),
    );
    const listed: string[] = [];
    let parent = '';
    for (const line of block.split('\n')) {
      const m = /^( *)(\S+)\s{2,}/.exec(line);
      if (!m) continue;
      const path = m[1] ? `${parent}${m[2]}` : (m[2] as string);
      if (!m[1]) parent = path;
      listed.push(path);
    }
    expect(listed.length).toBeGreaterThan(20);
    for (const path of listed) expect(existsSync(path.replace(/:$/, '')), path).toBe(true);
    const folders = readdirSync('service', { withFileTypes: true }).filter((e) => e.isDirectory());
    for (const folder of folders) expect(listed, folder.name).toContain(`service/${folder.name}/`);
  });
});
