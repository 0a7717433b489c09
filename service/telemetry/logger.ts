import pino, { type Logger } from 'pino';
import type { Config } from '../config/config.js';

export function createLogger(level: Config['logLevel'], destination?: pino.DestinationStream): Logger {
  return pino(
    {
      level,
      base: { service: 'delay-prediction' },
      timestamp: pino.stdTimeFunctions.isoTime,
      redact: { paths: ['*.authorization', '*.apiKey', '*.api_key', '*.token'], censor: '[redacted]' },
    },
    destination,
  );
}
