import { createEvaluationEvent, type Hook } from '@openfeature/server-sdk';
import { trace } from '@opentelemetry/api';

/**
 * Each flag evaluation as a `feature_flag.evaluation` event on the active span, with the semantic conventions'
 * attributes (feature_flag.key, feature_flag.result.variant, feature_flag.provider.name, feature_flag.context.id,
 * error.type) built by OpenFeature's own `createEvaluationEvent`: what `SpanEventHook` of
 * `@openfeature/open-telemetry-hooks` adds, and nothing else. That package cannot be loaded here: it imports
 * `@opentelemetry/api-logs` (an optional peer) when it loads. Unlike it, a span that does not record (an
 * unsampled trace) costs one check, and a failed evaluation is not recorded as an exception: it is an answer
 * (the coded default), counted by `delay_flags_evaluation_errors_total` and carried by the event's `error.type`.
 */
export const evaluationSpanEvents: Hook = {
  finally(hookContext, details) {
    const span = trace.getActiveSpan();
    if (!span?.isRecording()) return;
    const { name, attributes } = createEvaluationEvent(hookContext, details);
    span.addEvent(name, attributes);
  },
};
