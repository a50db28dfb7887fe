"""PerformanceAlerting: cooldown per alert type, the log and webhook sinks."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
from collections.abc import AsyncIterator

import pytest

pytest.importorskip("httpx")

from eventcore import ValidationError
from eventcore.alerts import (
    Alert,
    LogAlertSink,
    PerformanceAlerting,
    WebhookAlertSink,
)
from eventcore.observe import CommandReport
from eventcore.performance import PerformanceMetrics, PerformanceTargets


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Collect:
    def __init__(self) -> None:
        self.alerts: list[Alert] = []

    async def send(self, alert: Alert) -> None:
        self.alerts.append(alert)


class Failing:
    async def send(self, alert: Alert) -> None:
        raise RuntimeError("sink down")


def slow_metrics() -> PerformanceMetrics:
    """Metrics whose latency misses the production p50 target (10 ms) by far."""
    metrics = PerformanceMetrics()
    metrics.command_executed(CommandReport("Deposit", "success", 1, 0.5, 1))
    return metrics


def latency_alerts(alerts: list[Alert]) -> list[Alert]:
    return [a for a in alerts if a.kind == "latency_p50_ms"]


async def test_an_alert_type_is_silent_during_its_cooldown_and_fires_again_after() -> None:
    clock, sink = Clock(), Collect()
    alerting = PerformanceAlerting(
        slow_metrics(), PerformanceTargets.production(), sinks=[sink], clock=clock
    )
    assert len(latency_alerts(await alerting.check_once())) == 1
    clock.now = 299.0
    assert latency_alerts(await alerting.check_once()) == []
    clock.now = 300.0  # the default cooldown is 5 minutes
    assert len(latency_alerts(await alerting.check_once())) == 1
    sent = latency_alerts(sink.alerts)
    assert len(sent) == 2
    # Other targets may be missed too (events/s depends on how long the check took
    # to come), so the latency alert is picked out, not assumed to be first.
    assert "latency_p50_ms" in sent[0].message
    assert "< 10 ms" in sent[0].message


async def test_alerting_switched_off_at_run_time_sends_nothing() -> None:
    sink = Collect()
    alerting = PerformanceAlerting(slow_metrics(), PerformanceTargets.production(), sinks=[sink])
    alerting.enabled = False
    assert await alerting.check_once() == []
    alerting.enabled = True
    assert latency_alerts(await alerting.check_once())
    assert list(alerting.recent) == sink.alerts


async def test_the_log_sink_logs_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    alerting = PerformanceAlerting(
        slow_metrics(), PerformanceTargets.production(), sinks=[LogAlertSink()]
    )
    with caplog.at_level(logging.WARNING, logger="eventcore.alerts"):
        await alerting.check_once()
    assert any("latency_p50_ms" in r.getMessage() for r in caplog.records)


async def test_a_failing_sink_is_counted_and_the_others_still_receive() -> None:
    sink = Collect()
    alerting = PerformanceAlerting(
        slow_metrics(), PerformanceTargets.production(), sinks=[Failing(), sink]
    )
    sent = await alerting.check_once()
    assert sent
    assert sink.alerts == sent
    assert alerting.sink_failures == len(sent)


@pytest.fixture
async def webhook_server() -> AsyncIterator[tuple[str, asyncio.Queue[bytes]]]:
    """A real HTTP server on 127.0.0.1 that answers 200 and hands over each body."""
    bodies: asyncio.Queue[bytes] = asyncio.Queue()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        length = next(
            int(line.split(b":")[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length:")
        )
        await bodies.put(await reader.readexactly(length))
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        yield f"http://127.0.0.1:{port}/hooks/alerts", bodies


async def test_the_webhook_posts_a_slack_compatible_message(
    webhook_server: tuple[str, asyncio.Queue[bytes]],
) -> None:
    url, bodies = webhook_server
    sink = WebhookAlertSink(url, timeout=5)
    alerting = PerformanceAlerting(slow_metrics(), PerformanceTargets.production(), sinks=[sink])
    sent = await alerting.check_once()
    messages = [json.loads(bodies.get_nowait()) for _ in sent]
    assert [set(m) for m in messages] == [{"text"}] * len(sent)
    assert any("latency_p50_ms" in m["text"] for m in messages)
    assert sink.sent == len(sent)
    assert sink.failures == 0


def free_port_with_nothing_listening() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def test_a_refused_webhook_is_logged_and_counted_without_raising(
    caplog: pytest.LogCaptureFixture,
) -> None:
    sink = WebhookAlertSink(f"http://127.0.0.1:{free_port_with_nothing_listening()}/x")
    alerting = PerformanceAlerting(slow_metrics(), PerformanceTargets.production(), sinks=[sink])
    with caplog.at_level(logging.WARNING, logger="eventcore.alerts"):
        sent = await alerting.check_once()
    assert sent
    assert sink.failures == len(sent)
    assert sink.sent == 0
    assert any(
        "webhook" in r.getMessage() and "127.0.0.1" in r.getMessage() for r in caplog.records
    )


@pytest.mark.parametrize(
    "url", ["hooks.example.com/x", "ftp://example.com/x", "http://", "http://host:port/x", ""]
)
def test_a_malformed_webhook_url_is_refused_at_configuration(url: str) -> None:
    with pytest.raises(ValidationError, match="webhook URL"):
        WebhookAlertSink(url)


def test_the_webhook_url_comes_from_the_environment_when_not_given(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("EVENTCORE_ALERT_WEBHOOK_URL", "https://chat.example.com/hook/T0")
    assert WebhookAlertSink().url == "https://chat.example.com/hook/T0"
    monkeypatch.delenv("EVENTCORE_ALERT_WEBHOOK_URL")
    with pytest.raises(ValidationError, match="EVENTCORE_ALERT_WEBHOOK_URL"):
        WebhookAlertSink()
