"""OpenTelemetry spans, read back from the SDK's in-memory exporter."""

from __future__ import annotations

import pytest

pytest.importorskip("opentelemetry.sdk")

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from eventcore import Application, BusinessRuleViolation, InMemoryEventStore
from eventcore.demo.bank import Deposit, Transfer, bank_codec
from eventcore.otel import OpenTelemetryObserver


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


def traced_app(exporter: InMemorySpanExporter) -> Application:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    observer = OpenTelemetryObserver(tracer_provider=provider)
    return Application(InMemoryEventStore(), codec=bank_codec, observers=[observer])


async def test_each_command_is_a_span_with_type_streams_attempts_and_outcome(
    exporter: InMemorySpanExporter,
) -> None:
    app = traced_app(exporter)
    await app.execute(Deposit("alice", 10))
    await app.execute(Transfer("alice", "bob", 5))
    commands = [s for s in exporter.get_finished_spans() if s.name == "eventcore.command"]
    assert [dict(s.attributes or {}) for s in commands] == [
        {
            "eventcore.command.type": "Deposit",
            "eventcore.command.streams": 1,
            "eventcore.command.attempts": 1,
            "eventcore.command.outcome": "success",
            "eventcore.command.events": 1,
        },
        {
            "eventcore.command.type": "Transfer",
            "eventcore.command.streams": 2,
            "eventcore.command.attempts": 1,
            "eventcore.command.outcome": "success",
            "eventcore.command.events": 2,
        },
    ]
    assert all(s.end_time is not None and s.start_time is not None for s in commands)
    assert all(s.end_time >= s.start_time for s in commands)  # type: ignore[operator]


async def test_a_rejected_command_span_has_an_error_status(
    exporter: InMemorySpanExporter,
) -> None:
    app = traced_app(exporter)
    with pytest.raises(BusinessRuleViolation):
        await app.execute(Transfer("alice", "bob", 5))
    [span] = [s for s in exporter.get_finished_spans() if s.name == "eventcore.command"]
    assert span.status.status_code is StatusCode.ERROR
    assert span.attributes is not None
    assert span.attributes["eventcore.command.outcome"] == "rejected"


async def test_each_store_call_is_a_span_named_by_its_operation(
    exporter: InMemorySpanExporter,
) -> None:
    app = traced_app(exporter)
    await app.execute(Deposit("alice", 10))
    names = [s.name for s in exporter.get_finished_spans() if s.name != "eventcore.command"]
    assert names == ["eventcore.store.read_streams", "eventcore.store.append"]
