import {
  createEvaluationEvent,
  type FlagEvaluationOptions,
  type Hook,
  TelemetryAttribute,
} from '@openfeature/server-sdk';
import { trace } from '@opentelemetry/api';
import type { BookingRef } from '../privacy/booking-ref.js';

/**
 * Each flag evaluation as a `feature_flag.evaluation` event on the active span, with the semantic conventions'
 * attributes (feature_flag.key, feature_flag.result.variant, feature_flag.provider.name, feature_flag.context.id,
 * error.type) built by OpenFeature's own `createEvaluationEvent`: what `SpanEventHook` of
 * `@openfeature/open-telemetry-hooks` adds, but for `feature_flag.context.id`. That package is not used: it loads
 * `@opentelemetry/api-logs` and asks for ^0.205 as its peer, where the SDK here is 0.223. A failed evaluation is not
 * recorded as an exception: it is an answer (the coded default), counted by `delay_flags_evaluation_errors_total`
 * and carried by the event's `error.type`.
 *
 * The context id is the targeting key, a booking id: the event carries its pseudonym (`bookingRef`,
 * docs/privacy.md), while the flag still splits on the id itself.
 *
 * Returns the hook and the options of one evaluation: the hook when the active span records it. OpenFeature runs
 * every stage of every hook it is given (a hook context, a map and an await per stage), which cost the evaluation
 * more than the event itself (docs/performance.md): an unsampled request, nine in ten at TRACE_SAMPLE_RATIO=0.1,
 * is given none.
 */
export function evaluationSpanEvents(bookingRef: BookingRef) {
  const hook: Hook = {
    finally(hookContext, details) {
      const span = trace.getActiveSpan();
      if (!span?.isRecording()) return;
      const { name, attributes } = createEvaluationEvent(hookContext, details);
      const id = attributes[TelemetryAttribute.CONTEXT_ID];
      if (id !== undefined) attributes[TelemetryAttribute.CONTEXT_ID] = bookingRef(String(id));
      span.addEvent(name, attributes);
    },
  };
  const traced: FlagEvaluationOptions = Object.freeze({ hooks: [hook] });
  return {
    hook,
    options: (): FlagEvaluationOptions | undefined =>
      trace.getActiveSpan()?.isRecording() ? traced : undefined,
  };
}
