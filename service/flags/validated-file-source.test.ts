import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import {
  eventually,
  flagsDocument,
  flagsFile,
  silentLogger,
  tempDir,
  writeFlags,
} from '../test-support/harness.js';
import { MAX_FLAG_FILE_BYTES } from './flag-file.js';
import {
  FlagFileError,
  startValidatedFileSource,
  type ValidatedFileSource,
} from './validated-file-source.js';

const open: ValidatedFileSource[] = [];
afterEach(() => {
  for (const source of open.splice(0)) {
    source.stopWatching();
    source.removeCopy();
  }
});

async function started(file = flagsFile({ mlWeight: 10 })) {
  const refused: string[] = [];
  const source = await startValidatedFileSource({
    file,
    pollIntervalMs: 50,
    logger: silentLogger,
    onRefused: (message) => refused.push(message),
  });
  open.push(source);
  return { source, file, refused, copy: () => readFileSync(source.copy, 'utf8') };
}

const pollsPass = () => new Promise((r) => setTimeout(r, 200));

/** A FIFO named flags.json that no one writes to: reading it would wait for a writer for good. */
function fifo() {
  const path = join(tempDir(), 'flags.json');
  execFileSync('mkfifo', [path]);
  return path;
}

/** The delay-model flag of a valid document, edited by `edit`, as text. */
function delayModel(edit: (flag: Record<string, unknown>) => void) {
  const doc = flagsDocument({ mlWeight: 10 });
  edit(doc.flags['delay-model'] as unknown as Record<string, unknown>);
  return JSON.stringify(doc);
}

describe('validated file source at start', () => {
  it('publishes the file to a private copy and reports its rollout', async () => {
    const { source, file, copy } = await started();
    expect(source.copy).not.toBe(file);
    expect(copy()).toBe(readFileSync(file, 'utf8'));
    expect(source.acceptedText()).toBe(copy());
    expect(source.rollout().mlPercentage).toBe(10);
    expect(source.lastError()).toBeNull();
  });

  it.each([
    ['invalid', '{"flags": 1}', "rejected by flagd's schema: /flags must be object"],
    [
      'too large',
      { ...flagsDocument(), padding: 'x'.repeat(MAX_FLAG_FILE_BYTES) },
      'over the 1048576-byte limit',
    ],
  ])('refuses a file that is %s with a FlagFileError naming it', async (_name, content, reason) => {
    const file = join(tempDir(), 'flags.json');
    writeFlags(file, content);
    await expect(started(file)).rejects.toThrow(FlagFileError);
    await expect(started(file)).rejects.toThrow(`flag file ${file}: `);
    await expect(started(file)).rejects.toThrow(reason);
  });

  it.each([
    ['a character device', () => '/dev/zero'],
    ['a FIFO', fifo],
    [
      'a directory',
      () => {
        const dir = join(tempDir(), 'flags.json');
        mkdirSync(dir);
        return dir;
      },
    ],
  ])('refuses %s at the flag path without reading it', async (kind, at) => {
    const file = at();
    await expect(started(file)).rejects.toThrow(FlagFileError);
    await expect(started(file)).rejects.toThrow(`flag file ${file}: ${kind}, not a regular file`);
  });
});

describe('validated file source while watching', () => {
  it('publishes a valid change and records when it changed', async () => {
    const { source, file, copy } = await started();
    const before = source.lastChangedAt();
    writeFlags(file, flagsDocument({ mlWeight: 30 }));
    await eventually(
      () => source.rollout().mlPercentage,
      (p) => p === 30,
    );
    expect(copy()).toBe(readFileSync(file, 'utf8'));
    expect(source.acceptedText()).toBe(copy());
    expect(source.lastChangedAt().getTime()).toBeGreaterThanOrEqual(before.getTime());
  });

  it('keeps an invalid file out of the copy, refusing it once', async () => {
    const { source, file, refused, copy } = await started();
    const accepted = copy();
    writeFlags(file, '{"flags": {"delay-model": ');
    await eventually(
      () => source.lastError(),
      (e) => e !== null,
    );
    await pollsPass();
    expect(refused).toHaveLength(1);
    expect(refused[0]).toContain(file);
    expect(source.lastError()?.message).toBe(refused[0]);
    expect(copy()).toBe(accepted);
    expect(source.rollout().mlPercentage).toBe(10);
  });

  it('refuses an oversized file without parsing it', async () => {
    const { source, file, copy } = await started();
    const accepted = copy();
    writeFlags(file, { ...flagsDocument({ mlWeight: 0 }), padding: 'x'.repeat(MAX_FLAG_FILE_BYTES) });
    const error = await eventually(
      () => source.lastError(),
      (e) => e !== null,
    );
    expect(error?.message).toContain('over the 1048576-byte limit');
    expect(copy()).toBe(accepted);
  });

  it.each([
    ['a FIFO', (file: string) => renameSync(fifo(), file)],
    [
      'a character device',
      (file: string) => {
        symlinkSync('/dev/zero', `${file}.link`);
        renameSync(`${file}.link`, file);
      },
    ],
    [
      'a directory', // no rename puts a directory over a file: the file is missing for a moment
      (file: string) => {
        rmSync(file);
        mkdirSync(file);
      },
    ],
  ])(
    'refuses %s put at the flag path, keeps the last good flags, and reads the next file',
    async (kind, put) => {
      const { source, file, refused, copy } = await started();
      const accepted = copy();
      await pollsPass(); // past the first read after start, which would see the change as well
      put(file);
      const refusal = `cannot read ${file}: ${kind}, not a regular file`;
      await eventually(
        () => source.lastError()?.message,
        (message) => message === refusal,
      );
      await pollsPass();
      expect(refused.filter((message) => !message.includes('ENOENT'))).toEqual([refusal]);
      expect(copy()).toBe(accepted);
      expect(source.rollout().mlPercentage).toBe(10);

      rmSync(file, { recursive: true });
      writeFlags(file, flagsDocument({ mlWeight: 30 }));
      await eventually(
        () => source.rollout().mlPercentage,
        (p) => p === 30,
      );
      expect(source.lastError()).toBeNull();
    },
  );

  it('refuses a file whose split flagd would ignore, once, keeping the last good flags', async () => {
    const { source, file, refused, copy } = await started();
    const accepted = copy();
    writeFlags(
      file,
      delayModel((flag) => {
        flag.defaultVariant = 'gbt-v2';
        flag.targeting = {
          fractional: [
            ['gbt-v2', 0],
            ['heuristic', 0],
          ],
        };
      }),
    );
    await eventually(
      () => source.lastError(),
      (e) => e !== null,
    );
    await pollsPass();
    expect(refused).toHaveLength(1);
    expect(refused[0]).toContain('the fractional weights add up to 0');
    expect(copy()).toBe(accepted);
    expect(source.rollout().mlPercentage).toBe(10);
  });

  it('clears the error when the file comes back as it was accepted', async () => {
    const { source, file } = await started();
    const text = readFileSync(file, 'utf8');
    rmSync(file);
    const error = await eventually(
      () => source.lastError(),
      (e) => e !== null,
    );
    expect(error?.message).toContain(`cannot read ${file}`);
    writeFlags(file, text);
    await eventually(
      () => source.lastError(),
      (e) => e === null,
    );
  });

  it('stops following the file once it stops watching', async () => {
    const { source, file, copy } = await started();
    const accepted = copy();
    source.stopWatching();
    writeFlags(file, flagsDocument({ mlWeight: 30 }));
    await pollsPass();
    expect(copy()).toBe(accepted);
    source.removeCopy();
    expect(existsSync(source.copy)).toBe(false);
  });
});

describe('validated file source routing here', () => {
  it('publishes a change the file could not hold, says so, and yields to the next valid file', async () => {
    const { source, file, copy } = await started();
    const original = readFileSync(file, 'utf8');
    const rollback = JSON.stringify(flagsDocument({ mlWeight: 0 }));
    expect(source.routeHere(rollback, 'EACCES')).toBe(true);
    expect(copy()).toBe(rollback);
    expect(source.acceptedText()).toBe(rollback);
    expect(source.rollout().mlPercentage).toBe(0);
    expect(source.lastError()?.message).toContain('(EACCES)');
    expect(source.lastError()?.message).toContain(`other readers of ${file} do not see it`);

    // The file's old content, once read again, wins over what was routed here.
    writeFlags(file, original);
    await eventually(
      () => source.rollout().mlPercentage,
      (p) => p === 10,
    );
    expect(copy()).toBe(original);
    expect(source.lastError()).toBeNull();
  });

  it('refuses to route on an invalid document, leaving the copy as it was', async () => {
    const { source, copy } = await started();
    const accepted = copy();
    expect(() => source.routeHere('{"flags": 1}', 'EACCES')).toThrow();
    expect(copy()).toBe(accepted);
    expect(source.lastError()).toBeNull();
  });
});
