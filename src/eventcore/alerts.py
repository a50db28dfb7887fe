"""Alerts when live performance misses its targets.

::

    alerting = PerformanceAlerting(
        metrics,
        PerformanceTargets.production(),
        sinks=[LogAlertSink(), WebhookAlertSink()],  # URL from EVENTCORE_ALERT_WEBHOOK_URL
    )
    task = asyncio.create_task(alerting.run())  # checks every 30 s

Each missed target is one alert type (``latency_p95_ms``, ``memory_mb``, ...); a
type that fired is silent for ``cooldown`` seconds (5 minutes by default) however
often it is missed meanwhile. ``alerting.enabled = False`` pauses it at run time.
A sink that fails (a webhook that is down) is logged and counted; it never
breaks the application, nor the other sinks.

The webhook posts Slack's message format, ``{"text": "..."}``, with httpx (the
``alerts`` or ``web`` extra).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Protocol, runtime_checkable
from urllib.parse import urlsplit

from eventcore.errors import ValidationError
from eventcore.performance import PerformanceMetrics, PerformanceTargets, TargetCheck

_log = logging.getLogger(__name__)

WEBHOOK_URL_VARIABLE = "EVENTCORE_ALERT_WEBHOOK_URL"
DEFAULT_COOLDOWN = 300.0


@dataclass(frozen=True, slots=True)
class Alert:
    """A target missed: ``kind`` is the figure's name, ``message`` says by how much."""

    kind: str
    message: str
    value: float
    limit: float
    at: float  # time.time()

    def as_dict(self) -> dict[str, object]:
        return {
            "kind": self.kind,
            "message": self.message,
            "value": self.value,
            "limit": self.limit,
            "at": self.at,
        }


@runtime_checkable
class AlertSink(Protocol):
    async def send(self, alert: Alert) -> None: ...


class LogAlertSink:
    """Logs each alert as a warning on ``eventcore.alerts``."""

    async def send(self, alert: Alert) -> None:
        _log.warning("performance alert: %s", alert.message)


def _check_url(url: object) -> str:
    if not isinstance(url, str):
        raise ValidationError(f"webhook URL must be a str, got {url!r}")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError as exc:
        raise ValidationError(f"malformed webhook URL {url!r}: {exc}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValidationError(
            f"malformed webhook URL {url!r}: expected http(s)://host[:port]/path, "
            f"as given by the chat service"
        )
    return url


class WebhookAlertSink:
    """Posts ``{"text": message}`` (Slack's incoming-webhook format) to ``url``,
    or to ``$EVENTCORE_ALERT_WEBHOOK_URL`` when no URL is given.

    ``failures`` counts deliveries that failed (refused, timed out, not 2xx).
    """

    def __init__(self, url: str | None = None, *, timeout: float = 5.0) -> None:
        if url is None:
            url = os.environ.get(WEBHOOK_URL_VARIABLE)
            if not url:
                raise ValidationError(f"no webhook URL: pass url= or set {WEBHOOK_URL_VARIABLE}")
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not timeout > 0:
            raise ValidationError(f"timeout must be a positive number of seconds, got {timeout!r}")
        self.url = _check_url(url)
        self.timeout = float(timeout)
        self.sent = 0
        self.failures = 0

    async def send(self, alert: Alert) -> None:
        import httpx

        try:
            async with httpx.AsyncClient(timeout=self.timeout) as client:
                response = await client.post(self.url, json={"text": alert.message})
                response.raise_for_status()
        except httpx.HTTPError as exc:
            self.failures += 1
            # The URL may hold a secret token: name the host only.
            _log.warning(
                "alert webhook to %s failed (%s: %s); the alert was: %s",
                urlsplit(self.url).hostname,
                type(exc).__name__,
                exc,
                alert.message,
            )
            return
        self.sent += 1


class PerformanceAlerting:
    """Checks ``metrics`` against ``targets`` every ``interval`` seconds and sends
    an alert for each missed target, at most once per ``cooldown`` per type."""

    def __init__(
        self,
        metrics: PerformanceMetrics,
        targets: PerformanceTargets,
        *,
        sinks: Iterable[AlertSink] | None = None,
        interval: float = 30.0,
        cooldown: float = DEFAULT_COOLDOWN,
        clock: Callable[[], float] = time.monotonic,
        history: int = 50,
    ) -> None:
        for name, value in (("interval", interval), ("cooldown", cooldown)):
            if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                raise ValidationError(f"{name} must be a number of seconds >= 0, got {value!r}")
        if not interval > 0:
            raise ValidationError(f"interval must be above 0 seconds, got {interval!r}")
        self.metrics = metrics
        self.targets = targets
        self.sinks: tuple[AlertSink, ...] = tuple(sinks) if sinks is not None else (LogAlertSink(),)
        for sink in self.sinks:
            if not isinstance(sink, AlertSink):
                raise ValidationError(f"an alert sink needs an async send(alert), got {sink!r}")
        self.interval = float(interval)
        self.cooldown = float(cooldown)
        self.enabled = True
        self.sink_failures = 0
        self.recent: deque[Alert] = deque(maxlen=history)
        self._clock = clock
        self._last_sent: dict[str, float] = {}

    def _due(self, check: TargetCheck, now: float) -> bool:
        last = self._last_sent.get(check.name)
        return last is None or now - last >= self.cooldown

    async def check_once(self) -> list[Alert]:
        """Check the current snapshot; send and return the alerts that are due."""
        if not self.enabled:
            return []
        report = self.targets.check(self.metrics.snapshot())
        now = self._clock()
        alerts = []
        for check in report.missed:
            if not self._due(check, now):
                continue
            self._last_sent[check.name] = now
            assert check.value is not None  # a missed check has a figure
            alerts.append(
                Alert(check.name, check.describe(), check.value, check.limit, time.time())
            )
        for alert in alerts:
            self.recent.append(alert)
            await self._deliver(alert)
        return alerts

    async def _deliver(self, alert: Alert) -> None:
        for sink in self.sinks:
            try:
                await sink.send(alert)
            except Exception:
                self.sink_failures += 1
                _log.exception("alert sink %r failed; the alert was: %s", sink, alert.message)

    async def run(self) -> None:
        """Check every ``interval`` seconds until cancelled."""
        while True:
            await self.check_once()
            await asyncio.sleep(self.interval)
