/** What `withTimeout` answers when the work did not settle in time. */
export const TIMED_OUT: unique symbol = Symbol('timed out');

/**
 * The work's result, or TIMED_OUT after `ms`; the timer is cleared either way. The work itself goes on (a
 * late answer may still fill a cache); a rejection of the work rejects as it would without the timeout.
 */
export async function withTimeout<T>(work: Promise<T>, ms: number): Promise<T | typeof TIMED_OUT> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<typeof TIMED_OUT>((resolve) => {
    timer = setTimeout(() => resolve(TIMED_OUT), ms);
  });
  try {
    return await Promise.race([work, timeout]);
  } finally {
    clearTimeout(timer);
  }
}
