import { type ParseArgsConfig, parseArgs } from 'node:util';
import { type Config, ConfigError, loadConfig } from '../config/config.js';
import { DataDirInUseError, openDatabase } from '../storage/database.js';

/** The tools' exit for bad input and errors: the message on stderr, exit code 2. */
export function fail(message: string): never {
  console.error(message);
  process.exit(2);
}

/**
 * What every command-line tool starts with: its subcommand (one of `commands`, else usage and exit 2),
 * its options, and the service's configuration (a bad variable: its message and exit 2).
 */
export function startCli<C extends string, O extends NonNullable<ParseArgsConfig['options']>>(
  usage: string,
  commands: readonly C[],
  options: O,
) {
  const { positionals, values } = parseArgs({ allowPositionals: true, options });
  const command = positionals[0] as C;
  if (!commands.includes(command)) fail(`usage: ${usage}`);
  let config: Config;
  try {
    config = loadConfig();
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    fail(err.message);
  }
  return { command, values, config };
}

/** The service's database for a tool; a PGlite folder the running service holds is a clear refusal, exit 2. */
export async function openToolDatabase(config: Config) {
  try {
    return await openDatabase(config.database);
  } catch (err) {
    if (err instanceof DataDirInUseError) fail(err.message);
    throw err;
  }
}
