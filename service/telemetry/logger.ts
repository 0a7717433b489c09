import { trace } from '@opentelemetry/api';
import pino, { type Logger } from 'pino';
import type { Config } from '../config/config.js';
import { redactedError } from './redacted-error.js';

export function createLogger(level: Config['logLevel'], destination?: pino.DestinationStream): Logger {
  return pino(
    {
      level,
      base: { service: 'delay-prediction' },
      timestamp: pino.stdTimeFunctions.isoTime,
      // Every line written inside a span carries its trace: logs and traces join on trace_id.
      mixin() {
        const span = trace.getActiveSpan()?.spanContext();
        return span ? { trace_id: span.traceId, span_id: span.spanId } : {};
      },
      redact: { paths: ['*.authorization', '*.apiKey', '*.api_key', '*.token'], censor: '[redacted]' },
      // A failed query's values (booking ids) stay out of the line: docs/privacy.md.
      serializers: { err: (err: unknown) => pino.stdSerializers.err(redactedError(err) as Error) },
    },
    destination,
  );
}
