import { userInfo } from 'node:os';
import { type ParseArgsConfig, parseArgs } from 'node:util';
import { type Config, ConfigError, loadConfig } from '../config/config.js';

/** The tools' exit for bad input and errors: the message on stderr, exit code 2. */
export function fail(message: string): never {
  console.error(message);
  process.exit(2);
}

/** Who runs a tool, as audit rows name it: the user, or the uid where the container's user has no name. */
export function cliActor(): string {
  try {
    return `cli:${userInfo().username}`;
  } catch {
    return `cli:uid-${process.getuid?.() ?? 'unknown'}`;
  }
}

/** parseArgs' own refusals (an unknown option, an option without its value): usage errors, not crashes. */
const isParseArgsError = (err: unknown): err is Error =>
  err instanceof Error && String((err as NodeJS.ErrnoException).code).startsWith('ERR_PARSE_ARGS_');

/**
 * What every command-line tool starts with: its subcommand (one of `commands`), the operands that subcommand
 * takes (`operands`, by name; none when not listed), its options, parsed strictly, and the service's
 * configuration. A usage error (unknown command or option, an option without its value, operands missing or
 * extra) prints the usage; a bad variable prints its message; both exit 2.
 */
export function startCli<C extends string, O extends NonNullable<ParseArgsConfig['options']>>(
  usage: string,
  commands: readonly C[],
  options: O,
  operands: Partial<Record<C, readonly string[]>> = {},
) {
  const parse = () => {
    try {
      return parseArgs({ allowPositionals: true, strict: true, options });
    } catch (err) {
      if (!isParseArgsError(err)) throw err;
      fail(`${err.message}\nusage: ${usage}`);
    }
  };
  const parsed = parse();
  const [command, ...rest] = parsed.positionals as [C, ...string[]];
  if (!commands.includes(command)) fail(`usage: ${usage}`);
  const names = operands[command] ?? [];
  if (rest.length !== names.length)
    fail(
      `${command} takes ${names.length === 0 ? 'no operand' : names.join(' ')}, got ${rest.length === 0 ? 'none' : rest.map((a) => JSON.stringify(a)).join(' ')}\nusage: ${usage}`,
    );
  let config: Config;
  try {
    config = loadConfig(process.env, {}, { role: 'tool' });
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    fail(err.message);
  }
  return { command, operands: rest, values: parsed.values, config };
}

/** The service's database for a tool; a PGlite folder the running service holds is a clear refusal, exit 2. */
export async function openToolDatabase(config: Config) {
  // Loaded here, not at start: a usage error answers without the database drivers.
  const { DataDirInUseError, openDatabase } = await import('../storage/database.js');
  try {
    return await openDatabase(config.database);
  } catch (err) {
    if (err instanceof DataDirInUseError) fail(err.message);
    throw err;
  }
}
