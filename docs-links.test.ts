import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { describe, expect, it } from 'vitest';

/*
 * Every relative link of the pages a reader follows from the README resolves: the file exists, and an anchor
 * names a heading of the page it points to, as GitHub makes heading anchors.
 */

/** The README, every page under docs/ and deploy/, and the model's README. */
function pages(): string[] {
  const under = (dir: string): string[] =>
    readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
      e.isDirectory() ? under(join(dir, e.name)) : e.name.endsWith('.md') ? [join(dir, e.name)] : [],
    );
  return ['README.md', 'models/README.md', ...under('docs'), ...under('deploy')];
}

/** The page with its fenced blocks blanked, line breaks kept: nothing in a code block is a heading or a link. */
function prose(markdown: string): string {
  let fence: string | null = null;
  return markdown
    .split('\n')
    .map((line) => {
      const m = /^ {0,3}(`{3,}|~{3,})/.exec(line);
      if (fence === null && m) {
        fence = (m[1] as string)[0] as string;
        return '';
      }
      if (fence !== null) {
        if (m && (m[1] as string)[0] === fence) fence = null;
        return '';
      }
      return line;
    })
    .join('\n');
}

/**
 * GitHub's anchor of a heading (github-slugger): the text as rendered (links reduced to their text, code and
 * emphasis marks dropped), lower-cased, every character but letters, digits, `_`, `-` and spaces removed, each
 * space a hyphen.
 */
function headingSlug(heading: string): string {
  return heading
    .trim()
    .replace(/!?\[([^\]]*)\]\([^)]*\)/g, '$1')
    .replace(/<[^>]+>/g, '')
    .toLowerCase()
    .replace(/[^\p{L}\p{M}\p{N}\p{Pc} -]/gu, '')
    .replace(/ /g, '-');
}

/** A page's anchors in order: a repeated slug takes -1, -2, ... as GitHub numbers them; explicit ids too. */
function anchors(markdown: string): Set<string> {
  const occurrences = new Map<string, number>();
  const found = new Set<string>();
  const text = prose(markdown);
  for (const m of text.matchAll(/^ {0,3}#{1,6}[ \t]+(.*?)(?:[ \t]+#+)?[ \t]*$/gm)) {
    const original = headingSlug(m[1] as string);
    let slug = original;
    while (occurrences.has(slug)) {
      const n = (occurrences.get(original) ?? 0) + 1;
      occurrences.set(original, n);
      slug = `${original}-${n}`;
    }
    occurrences.set(slug, 0);
    found.add(slug);
  }
  for (const m of text.matchAll(/<a\s[^>]*\b(?:name|id)="([^"]+)"/g)) found.add(m[1] as string);
  return found;
}

/** The relative links of a page (inline and reference definitions), outside code, with their line. */
function relativeLinks(markdown: string): { line: number; target: string }[] {
  const text = prose(markdown).replace(/`[^`\n]*`/g, (code) => ' '.repeat(code.length));
  const lineOf = (index: number) => text.slice(0, index).split('\n').length;
  const links = [
    ...[...text.matchAll(/\]\(\s*<?([^)\s>]+)>?(?:\s+"[^"]*")?\s*\)/g)].map((m) => ({
      line: lineOf(m.index),
      target: m[1] as string,
    })),
    ...[...text.matchAll(/^ {0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s|$)/gm)].map((m) => ({
      line: lineOf(m.index),
      target: m[1] as string,
    })),
  ];
  return links.filter(({ target }) => !/^[a-z][a-z0-9+.-]*:/i.test(target));
}

/** What is wrong with a link from `page`, or null. */
function broken(page: string, target: string): string | null {
  const hash = target.indexOf('#');
  const path = decodeURIComponent(hash === -1 ? target : target.slice(0, hash));
  const anchor = hash === -1 ? null : decodeURIComponent(target.slice(hash + 1));
  const file = path === '' ? page : path.startsWith('/') ? path.slice(1) : join(dirname(page), path);
  if (relative('.', file).startsWith('..')) return 'outside the repository';
  if (!existsSync(file)) return `${file} does not exist`;
  if (anchor === null) return null;
  if (statSync(file).isDirectory() || !file.endsWith('.md'))
    return /^L\d+(-L\d+)?$/.test(anchor) ? null : `#${anchor} in a file that is not a page`;
  return anchors(readFileSync(file, 'utf8')).has(anchor) ? null : `${file} has no heading #${anchor}`;
}

describe('links between the pages', () => {
  it('makes heading anchors as GitHub does', () => {
    const page = [
      '# ADR 0007: What rolls the model back, and how fast',
      '## `source` and `fallback_reason`',
      '## Node 24 against Node 20, in the same runs (2026-12-02)',
      '## [The API](api.md) and *its* errors',
      '```sh',
      '# a comment, not a heading',
      '```',
      '### The aims',
      '### The aims',
      '### The aims-1',
      '## Étapes ##',
    ].join('\n');
    expect([...anchors(page)]).toEqual([
      'adr-0007-what-rolls-the-model-back-and-how-fast',
      'source-and-fallback_reason',
      'node-24-against-node-20-in-the-same-runs-2026-12-02',
      'the-api-and-its-errors',
      'the-aims',
      'the-aims-1',
      'the-aims-1-1',
      'étapes',
    ]);
  });

  it('resolves every relative link and anchor of README.md, docs/, models/README.md and deploy/', () => {
    const checked = pages();
    expect(checked).toContain('docs/configuration.md');
    const problems: string[] = [];
    let links = 0;
    for (const page of checked)
      for (const { line, target } of relativeLinks(readFileSync(page, 'utf8'))) {
        links++;
        const why = broken(page, target);
        if (why) problems.push(`${page}:${line}: ${target}: ${why}`);
      }
    expect(links).toBeGreaterThan(50);
    expect(problems).toEqual([]);
  });
});
