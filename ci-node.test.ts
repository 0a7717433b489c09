import { spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { tempDir } from './service/test-support/harness.js';

/*
 * .ci/node, the step of .ci/run that chooses the Node npm ci and npm test run on. The machine's node and npm are
 * stand-ins here (shell scripts answering --version; npm recording its arguments and writing a node that
 * answers the installed version): the real install downloads the `node` package from the registry.
 */
const pinned = readFileSync('.node-version', 'utf8').trim();
const major = pinned.split('.')[0] as string;

function executable(path: string, script: string) {
  mkdirSync(join(path, '..'), { recursive: true });
  writeFileSync(path, `#!/bin/sh\n${script}\n`);
  chmodSync(path, 0o755);
}

/** A machine whose node says `machineVersion`; returns how .ci/node's shell ends up. */
function machine(machineVersion: string) {
  const dir = tempDir('delay-ci-node-');
  const bin = join(dir, 'bin');
  const prefix = join(dir, 'prefix');
  const npmCalls = join(dir, 'npm-calls');
  executable(join(bin, 'node'), `echo v${machineVersion}`);
  // As `npm install --prefix DIR node@X` does: DIR/node_modules/.bin/node, of version X.
  executable(
    join(bin, 'npm'),
    [
      `echo "$*" >> ${npmCalls}`,
      'prefix=$3; version=$(echo "$6" | sed s/^node@//)',
      'mkdir -p "$prefix/node_modules/.bin"',
      `printf '#!/bin/sh\\necho v%s\\n' "$version" > "$prefix/node_modules/.bin/node"`,
      'chmod +x "$prefix/node_modules/.bin/node"',
    ].join('\n'),
  );
  const source = () =>
    spawnSync('bash', ['-c', 'set -euo pipefail; . .ci/node; command -v node; node --version'], {
      encoding: 'utf8',
      env: { PATH: `${bin}:/usr/bin:/bin`, HOME: dir, CI_NODE_PREFIX: prefix },
    });
  const calls = () => (existsSync(npmCalls) ? readFileSync(npmCalls, 'utf8').trim().split('\n') : []);
  return { prefix, bin, source, calls };
}

describe('.ci/node', () => {
  it(`installs Node ${pinned} from the registry's node package when the machine's node is older, and puts it first`, () => {
    const m = machine('20.19.0');
    const first = m.source();
    expect(first.status, first.stderr).toBe(0);
    expect(m.calls()).toEqual([`install --prefix ${m.prefix} --no-audit --no-fund node@${pinned}`]);
    expect(first.stdout.trim().split('\n').slice(-2)).toEqual([
      join(m.prefix, 'node_modules/.bin/node'),
      `v${pinned}`,
    ]);
    // The next run finds it in the prefix.
    const again = m.source();
    expect(again.status, again.stderr).toBe(0);
    expect(again.stdout.trim().split('\n').at(-1)).toBe(`v${pinned}`);
    expect(m.calls()).toHaveLength(1);
  });

  it(`replaces a prefix holding another release, and a machine's node of a newer line`, () => {
    const m = machine(`${Number(major) + 2}.1.0`);
    executable(join(m.prefix, 'node_modules/.bin/node'), `echo v${major}.0.0`);
    const result = m.source();
    expect(result.status, result.stderr).toBe(0);
    expect(m.calls()).toEqual([`install --prefix ${m.prefix} --no-audit --no-fund node@${pinned}`]);
    expect(result.stdout.trim().split('\n').at(-1)).toBe(`v${pinned}`);
  });

  it(`keeps the machine's node when it is already Node ${major}`, () => {
    const m = machine(`${major}.99.0`);
    const result = m.source();
    expect(result.status, result.stderr).toBe(0);
    expect(m.calls()).toEqual([]);
    expect(result.stdout.trim().split('\n')).toEqual([join(m.bin, 'node'), `v${major}.99.0`]);
  });

  it('fails, saying so, when the install does not give Node of the pinned line', () => {
    const m = machine('20.19.0');
    executable(join(m.bin, 'npm'), 'exit 0');
    const result = m.source();
    expect(result.status).toBe(1);
    expect(result.stderr).toContain(`is v20.19.0, not Node ${major}`);
  });
});

describe('the Node the suite runs on', () => {
  const running = process.version.slice(1).split('.')[0];
  // Under CI=true .ci/run has put Node of the pinned line first; a developer's machine may run another.
  it.skipIf(running !== major && process.env.CI !== 'true')(
    `is Node ${major} (.node-version), as in the image`,
    () => {
      expect(process.version.startsWith(`v${major}.`), process.version).toBe(true);
    },
  );
  if (running !== major && process.env.CI !== 'true')
    console.log(`ci-node.test.ts: this suite runs on ${process.version}; CI and the image run v${pinned}`);
});
