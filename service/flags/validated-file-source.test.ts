import { existsSync, readFileSync, rmSync } from 'node:fs';
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
import {
  FlagFileError,
  MAX_FLAG_FILE_BYTES,
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

function started(file = flagsFile({ mlWeight: 10 })) {
  const refused: string[] = [];
  const source = startValidatedFileSource({
    file,
    pollIntervalMs: 50,
    logger: silentLogger,
    onRefused: (message) => refused.push(message),
  });
  open.push(source);
  return { source, file, refused, copy: () => readFileSync(source.copy, 'utf8') };
}

const pollsPass = () => new Promise((r) => setTimeout(r, 200));

describe('validated file source at start', () => {
  it('publishes the file to a private copy and reports its rollout', () => {
    const { source, file, copy } = started();
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
  ])('refuses a file that is %s with a FlagFileError naming it', (_name, content, reason) => {
    const file = join(tempDir(), 'flags.json');
    writeFlags(file, content);
    expect(() => started(file)).toThrow(FlagFileError);
    expect(() => started(file)).toThrow(`flag file ${file}: `);
    expect(() => started(file)).toThrow(reason);
  });
});

describe('validated file source while watching', () => {
  it('publishes a valid change and records when it changed', async () => {
    const { source, file, copy } = started();
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
    const { source, file, refused, copy } = started();
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
    const { source, file, copy } = started();
    const accepted = copy();
    writeFlags(file, { ...flagsDocument({ mlWeight: 0 }), padding: 'x'.repeat(MAX_FLAG_FILE_BYTES) });
    const error = await eventually(
      () => source.lastError(),
      (e) => e !== null,
    );
    expect(error?.message).toContain('over the 1048576-byte limit');
    expect(copy()).toBe(accepted);
  });

  it('clears the error when the file comes back as it was accepted', async () => {
    const { source, file } = started();
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
    const { source, file, copy } = started();
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
    const { source, file, copy } = started();
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

  it('refuses to route on an invalid document, leaving the copy as it was', () => {
    const { source, copy } = started();
    const accepted = copy();
    expect(() => source.routeHere('{"flags": 1}', 'EACCES')).toThrow();
    expect(copy()).toBe(accepted);
    expect(source.lastError()).toBeNull();
  });
});
