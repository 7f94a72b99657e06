"""OpenTelemetry: a span per attempt, in the trace of the code that dispatched the job.

    from evq.contrib.otel import OpenTelemetry
    worker = q.worker(middleware=[OpenTelemetry()])      # or evq work --middleware MODULE:NAME

A dispatch made while a span is current carries its W3C trace context (``traceparent``) in the
job (``JobDispatched.meta``); each attempt's span (``evq NAME``, kind consumer) is its child, with
the job's id, name, queue, attempt and outcome (``succeeded``, ``failed``, ``timed_out`` or
``cancelled``) as attributes. Needs ``pip install 'evq[otel]'`` (opentelemetry-api) and an SDK
set up by the application; in a process-pool child the span is exported by the child's provider
(set it up in the ``--app`` module).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from opentelemetry import propagate, trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from evq.workers.middleware import JobContext, Middleware


def current_trace() -> dict[str, str]:
    """The current span's trace context as W3C headers (``traceparent``...), or nothing when
    no span is current: what a dispatch carries."""
    if not trace.get_current_span().get_span_context().is_valid:
        return {}
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier


class OpenTelemetry(Middleware):
    """A span around each attempt (``tracer_provider``: default, the global one)."""

    def __init__(self, tracer_provider: Any = None) -> None:
        self.tracer_provider = tracer_provider

    def __call__(self, job: Any, ctx: JobContext, call_next: Callable[[], Any]) -> Any:
        tracer = trace.get_tracer("evq", tracer_provider=self.tracer_provider)
        parent = propagate.extract(ctx.meta) if ctx.meta else None
        attributes = {"messaging.system": "evq", "messaging.destination.name": ctx.queue,
                      "messaging.message.id": str(ctx.id), "evq.job.id": ctx.id,
                      "evq.job.name": ctx.name, "evq.queue": ctx.queue,
                      "evq.attempt": ctx.attempt}
        with tracer.start_as_current_span(f"evq {ctx.name}", context=parent,
                                          kind=SpanKind.CONSUMER, attributes=attributes,
                                          record_exception=False,
                                          set_status_on_exception=False) as span:
            try:
                result = call_next()
            except BaseException as exc:
                outcome = ("cancelled" if job.cancelled else
                           "timed_out" if isinstance(exc, TimeoutError) else "failed")
                span.set_attribute("evq.outcome", outcome)
                span.record_exception(exc)
                span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))
                raise
            span.set_attribute("evq.outcome", "cancelled" if job.cancelled else "succeeded")
            return result
