"""OpenTelemetry (``evq[otel]``): a span per attempt, joined to the trace of the dispatcher
through the W3C trace context carried in ``JobDispatched.meta``."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

import evq
from evq.contrib.otel import OpenTelemetry
from evq.eventlog.events import JobDispatched

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.i11_jobs import Refused, Tagged  # noqa: E402


@pytest.fixture
def tracing() -> Iterator[tuple[TracerProvider, InMemorySpanExporter]]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider, exporter
    provider.shutdown()


def dispatched(q: evq.Queue, job_id: int) -> JobDispatched:
    return q.history(job_id)[0].event  # type: ignore[return-value]


def test_the_attempts_span_joins_the_dispatchers_trace(queue: evq.Queue, tracing: Any) -> None:
    provider, exporter = tracing
    with provider.get_tracer("app").start_as_current_span("request") as request:
        job = queue.dispatch(Tagged())
    parent = request.get_span_context()
    assert dispatched(queue, job).meta["traceparent"].split("-")[1] == f"{parent.trace_id:032x}"
    worker = queue.worker(middleware=[OpenTelemetry(provider)], stop_when_empty=True)
    assert worker.run() == 1
    [span] = [s for s in exporter.get_finished_spans() if s.name == "evq i11.tagged"]
    assert (span.context.trace_id, span.parent.span_id) == (parent.trace_id, parent.span_id)
    assert span.kind is SpanKind.CONSUMER
    assert {k: span.attributes[k] for k in ("evq.job.id", "evq.job.name", "evq.queue",
                                            "evq.attempt", "evq.outcome")} == {
        "evq.job.id": job, "evq.job.name": "i11.tagged", "evq.queue": "default",
        "evq.attempt": 1, "evq.outcome": "succeeded"}


def test_failed_attempts_are_error_spans_and_without_a_current_span_nothing_is_carried(
        queue: evq.Queue, tracing: Any) -> None:
    provider, exporter = tracing
    job = queue.dispatch(Refused())
    assert dispatched(queue, job).meta == {} and queue.job(job).meta is None
    queue.worker(middleware=[OpenTelemetry(provider)], stop_when_empty=True).run()
    spans = exporter.get_finished_spans()
    assert [(s.attributes["evq.attempt"], s.attributes["evq.outcome"], s.status.status_code,
             s.parent) for s in spans] == [(1, "failed", StatusCode.ERROR, None),
                                           (2, "failed", StatusCode.ERROR, None)]
    assert spans[0].events[0].name == "exception"
