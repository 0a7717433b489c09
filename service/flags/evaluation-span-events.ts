import { createEvaluationEvent, type FlagEvaluationOptions, type Hook } from '@openfeature/server-sdk';
import { trace } from '@opentelemetry/api';

/**
 * Each flag evaluation as a `feature_flag.evaluation` event on the active span, with the semantic conventions'
 * attributes (feature_flag.key, feature_flag.result.variant, feature_flag.provider.name, feature_flag.context.id,
 * error.type) built by OpenFeature's own `createEvaluationEvent`: what `SpanEventHook` of
 * `@openfeature/open-telemetry-hooks` adds, and nothing else. That package is not used: it loads
 * `@opentelemetry/api-logs` and asks for ^0.205 as its peer, where the SDK here is 0.223. A failed evaluation is not recorded as an
 * exception: it is an answer (the coded default), counted by `delay_flags_evaluation_errors_total` and carried
 * by the event's `error.type`.
 */
export const evaluationSpanEvents: Hook = {
  finally(hookContext, details) {
    const span = trace.getActiveSpan();
    if (!span?.isRecording()) return;
    const { name, attributes } = createEvaluationEvent(hookContext, details);
    span.addEvent(name, attributes);
  },
};

const TRACED: FlagEvaluationOptions = Object.freeze({ hooks: [evaluationSpanEvents] });

/**
 * The hook for one evaluation, when the active span records it. OpenFeature runs every stage of every hook it
 * is given (a hook context, a map and an await per stage), which cost the evaluation more than the event
 * itself (docs/performance.md): an unsampled request, nine in ten at TRACE_SAMPLE_RATIO=0.1, is given none.
 */
export const evaluationOptions = (): FlagEvaluationOptions | undefined =>
  trace.getActiveSpan()?.isRecording() ? TRACED : undefined;
