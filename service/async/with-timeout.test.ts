import { describe, expect, it } from 'vitest';
import { TIMED_OUT, withTimeout } from './with-timeout.js';

describe('withTimeout', () => {
  it('answers the work when it settles in time, TIMED_OUT when it does not, and rejects as the work does', async () => {
    expect(await withTimeout(Promise.resolve(7), 50)).toBe(7);
    expect(await withTimeout(new Promise((r) => setTimeout(() => r(7), 200)), 20)).toBe(TIMED_OUT);
    await expect(withTimeout(Promise.reject(new Error('boom')), 50)).rejects.toThrow('boom');
  });
});
