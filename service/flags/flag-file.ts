import { randomBytes } from 'node:crypto';
import {
  closeSync,
  constants,
  fstatSync,
  fsyncSync,
  openSync,
  readSync,
  renameSync,
  type Stats,
  unlinkSync,
  writeFileSync,
} from 'node:fs';
import { open } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';

/** Reading and replacing flag files: what the watcher, the flag store and the writer share. */

/** A flag document is a few kilobytes; parsing a huge one would hold the event loop (50 MB: 0.4 s). */
export const MAX_FLAG_FILE_BYTES = 1024 * 1024;

function kindOf(stat: Stats): string {
  if (stat.isDirectory()) return 'a directory';
  if (stat.isFIFO()) return 'a FIFO';
  if (stat.isCharacterDevice()) return 'a character device';
  if (stat.isBlockDevice()) return 'a block device';
  if (stat.isSocket()) return 'a socket';
  return 'a special file';
}

const overLimit = (size: string) => `${size}, over the ${MAX_FLAG_FILE_BYTES}-byte limit of a flag file`;

/**
 * Reads a flag file off the event loop. Anything but a regular file is refused: a device reports size 0 and
 * never ends, a FIFO blocks its reader. The kind is taken from the opened descriptor, so nothing can be swapped
 * in between a check and the read, and at most one byte past the limit is read, whatever size is reported.
 */
export async function readFlagFile(file: string): Promise<string> {
  // Without O_NONBLOCK, opening a FIFO no one writes to waits for a writer, holding a thread of libuv's pool.
  const handle = await open(file, constants.O_RDONLY | constants.O_NONBLOCK);
  try {
    const stat = await handle.stat();
    if (!stat.isFile()) throw new Error(`${kindOf(stat)}, not a regular file`);
    if (stat.size > MAX_FLAG_FILE_BYTES) throw new Error(overLimit(`${stat.size} bytes`));
    const buffer = Buffer.allocUnsafe(MAX_FLAG_FILE_BYTES + 1);
    let length = 0;
    for (;;) {
      const { bytesRead } = await handle.read(buffer, length, buffer.length - length, length);
      if (bytesRead === 0) return buffer.toString('utf8', 0, length);
      length += bytesRead;
      if (length > MAX_FLAG_FILE_BYTES) throw new Error(overLimit(`more than ${MAX_FLAG_FILE_BYTES} bytes`));
    }
  } finally {
    await handle.close();
  }
}

/**
 * Reads a flag file synchronously (a change reads and writes under the file's lock, as one step), refusing what
 * is not a regular file or is over the size limit before reading it: a FIFO would block the event loop until a
 * writer came, a device (/dev/zero) would fill memory. Opened non-blocking, so even opening a FIFO without a
 * writer returns at once. The watcher's reads are asynchronous: `readFlagFile`.
 */
export function readFlagFileSync(file: string): string {
  const fd = openSync(file, constants.O_RDONLY | constants.O_NONBLOCK);
  try {
    const stat = fstatSync(fd);
    if (!stat.isFile()) throw new Error(`${file} is ${kindOf(stat)}, not a regular file`);
    if (stat.size > MAX_FLAG_FILE_BYTES) throw new Error(overLimit(`${stat.size} bytes`));
    const buffer = Buffer.allocUnsafe(MAX_FLAG_FILE_BYTES + 1);
    let length = 0;
    for (;;) {
      const bytesRead = readSync(fd, buffer, length, buffer.length - length, length);
      if (bytesRead === 0) return buffer.toString('utf8', 0, length);
      length += bytesRead;
      if (length > MAX_FLAG_FILE_BYTES) throw new Error(overLimit(`more than ${MAX_FLAG_FILE_BYTES} bytes`));
    }
  } finally {
    closeSync(fd);
  }
}

/**
 * Replaces `file` with `text` atomically: a temporary file of its own (exclusive create, a random name, so no
 * other writer or stale file shares it) in the same folder, fsynced, renamed over the original, and the folder
 * fsynced, so a reader sees the old file or the new one, never a part. Any failure removes the temporary file.
 */
export function replaceFile(file: string, text: string) {
  const tmp = join(dirname(file), `.${basename(file)}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`);
  const fd = openSync(tmp, 'wx');
  try {
    try {
      writeFileSync(fd, text);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(tmp, file);
  } catch (err) {
    try {
      unlinkSync(tmp);
    } catch {
      // Already gone: nothing left behind.
    }
    throw err;
  }
  const dir = openSync(dirname(file), 'r');
  fsyncSync(dir);
  closeSync(dir);
}
