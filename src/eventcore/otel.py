"""OpenTelemetry spans for eventcore (the ``otel`` extra: ``opentelemetry-api``).

::

    app = Application(store, observers=[OpenTelemetryObserver()])

One span per command (``eventcore.command``; attributes ``eventcore.command.type``,
``.streams``, ``.attempts``, ``.outcome``, ``.events``) and one per store call
(``eventcore.store.<operation>``), on the tracer provider given or the global one.
Spans are recorded when the work ends, with its real start and end times, as
children of the span current at that moment (a request's, say): a store call's
span is a sibling of its command's, not its child.
"""

from __future__ import annotations

import time

from opentelemetry import trace
from opentelemetry.trace import Status, StatusCode, TracerProvider

from eventcore.observe import CommandReport, Observer

__all__ = ["OpenTelemetryObserver"]


class OpenTelemetryObserver(Observer):
    def __init__(self, tracer_provider: TracerProvider | None = None) -> None:
        self._tracer = trace.get_tracer("eventcore", tracer_provider=tracer_provider)

    def _record(
        self, name: str, seconds: float, attributes: dict[str, str | int], error: str | None
    ) -> None:
        end = time.time_ns()
        span = self._tracer.start_span(
            name, start_time=end - int(seconds * 1e9), attributes=attributes
        )
        if error is not None:
            span.set_status(Status(StatusCode.ERROR, error))
        span.end(end_time=end)

    def command_executed(self, report: CommandReport) -> None:
        attributes: dict[str, str | int] = {
            "eventcore.command.type": report.command_type,
            "eventcore.command.streams": report.streams,
            "eventcore.command.attempts": report.attempts,
            "eventcore.command.outcome": report.outcome,
            "eventcore.command.events": report.events,
        }
        error = None if report.outcome == "success" else report.outcome
        self._record("eventcore.command", report.seconds, attributes, error)

    def store_operation(self, operation: str, seconds: float, error: Exception | None) -> None:
        attributes: dict[str, str | int] = {"eventcore.store.operation": operation}
        failure = None if error is None else type(error).__name__
        self._record(f"eventcore.store.{operation}", seconds, attributes, failure)
