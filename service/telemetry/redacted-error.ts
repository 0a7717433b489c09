/** What a database error may keep: its SQLSTATE and the schema names it points at, never a value. */
const KEPT = [
  'code',
  'severity',
  'table_name',
  'column_name',
  'constraint_name',
  'table',
  'column',
  'constraint',
] as const;

/** Drizzle's failed query: `Failed query: <sql>\nparams: <every value, booking ids included>`. */
const DRIZZLE_PARAMS = '\nparams: ';
/** Errors wrapping errors: a longer chain is cut here. */
const MAX_CAUSES = 5;
const WITHHELD = '[withheld]';

/**
 * An error as a log line or a span may show it (docs/privacy.md). A failed query carries its values, booking ids
 * among them (feedback's reads, the prediction log's inserts): drizzle writes them into its message and keeps them
 * (`params`), the drivers keep them too (`parameters`, `params`), Postgres's `detail` quotes the row
 * (`Key (booking_id)=(...)`) and some of its messages quote a value (`invalid input syntax ...: "..."`). The copy
 * keeps the class, the message with every value of the chain's queries withheld, the stack's frames, the SQLSTATE
 * and schema names, and the cause, redacted alike; anything else is left out. Not an error: as it is.
 */
export function redactedError<T>(err: T): T {
  if (!(err instanceof Error)) return err;
  const chain: Error[] = [];
  for (let e: unknown = err; e instanceof Error && chain.length <= MAX_CAUSES; e = e.cause) chain.push(e);
  const values = [...new Set(chain.flatMap((e) => queryValues(e)))].sort((a, b) => b.length - a.length);
  const withheld = (text: string) => values.reduce((t, value) => t.replaceAll(value, WITHHELD), text);
  const copy = (e: Error, depth: number): Error => {
    const params = e.message.indexOf(DRIZZLE_PARAMS);
    const message = withheld(params < 0 ? e.message : `${e.message.slice(0, params)}\nparams: withheld`);
    const frames = (e.stack ?? '').split('\n').filter((line) => /^\s+at /.test(line));
    const shown = Object.create(Object.getPrototypeOf(e)) as Error;
    const hidden = (value: unknown) => ({ value, writable: true, configurable: true, enumerable: false });
    Object.defineProperties(shown, {
      name: hidden(e.name),
      message: hidden(message),
      stack: hidden([`${e.name}: ${message}`, ...frames].join('\n')),
    });
    const fields = e as unknown as Record<string, unknown>;
    for (const key of KEPT) if (fields[key] !== undefined) Object.assign(shown, { [key]: fields[key] });
    const next = chain[depth + 1];
    if (next) shown.cause = copy(next, depth + 1);
    return shown;
  };
  return copy(err, 0) as T;
}

/** The text values a failed query carried (booking ids are text): drizzle's `params`, postgres-js's `parameters`. */
function queryValues(err: Error): string[] {
  const { params, parameters } = err as { params?: unknown; parameters?: unknown };
  const texts = (value: unknown): string[] =>
    Array.isArray(value) ? value.flatMap(texts) : typeof value === 'string' && value !== '' ? [value] : [];
  return [...texts(params), ...texts(parameters)];
}

/** An error's message and its cause's, as one text without a failed query's values (redactedError). */
export function redactedMessage(err: unknown): string {
  const e = redactedError(err) as Error & { cause?: Error };
  return e.cause?.message ? `${e.message}: ${e.cause.message}` : e.message;
}
