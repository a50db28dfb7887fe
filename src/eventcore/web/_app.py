"""The ASGI app behind :mod:`eventcore.web`, and :func:`serve` to run it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import AsyncIterator
from dataclasses import dataclass
from importlib import resources
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp

from eventcore.alerts import PerformanceAlerting
from eventcore.application import Application
from eventcore.errors import ValidationError
from eventcore.observe import ObserverGroup
from eventcore.performance import PerformanceMetrics, PerformanceTargets
from eventcore.prometheus import PrometheusObserver
from eventcore.store import EventStore

_log = logging.getLogger("eventcore.web")
_STATIC = resources.files("eventcore.web") / "static"


@dataclass(frozen=True, slots=True)
class _Sources:
    store: EventStore
    metrics: PerformanceMetrics
    registry: CollectorRegistry
    targets: PerformanceTargets
    alerting: PerformanceAlerting | None
    health_timeout: float


def _resolve(
    source: Application | EventStore,
    metrics: PerformanceMetrics | None,
    registry: CollectorRegistry | None,
    targets: PerformanceTargets | None,
    alerting: PerformanceAlerting | None,
    health_timeout: float,
) -> _Sources:
    """Take what was not given from the application's observers."""
    group: ObserverGroup | None = None
    if isinstance(source, Application):
        store, group = source.store, source.observer
    elif isinstance(source, EventStore):
        store = source
    else:
        raise ValidationError(f"create_app() needs an Application or an EventStore, got {source!r}")
    if metrics is None:
        metrics = alerting.metrics if alerting is not None else None
    if metrics is None and group is not None:
        metrics = group.find(PerformanceMetrics)
    if registry is None and group is not None:
        prometheus = group.find(PrometheusObserver)
        registry = prometheus.registry if prometheus is not None else None
    if targets is None:
        targets = alerting.targets if alerting is not None else PerformanceTargets.production()
    if not (isinstance(health_timeout, int | float) and health_timeout > 0):
        raise ValidationError(f"health_timeout must be a positive number, got {health_timeout!r}")
    return _Sources(
        store,
        # Without observers these stay empty: the page then shows no traffic.
        metrics if metrics is not None else PerformanceMetrics(),
        registry if registry is not None else CollectorRegistry(),
        targets,
        alerting,
        float(health_timeout),
    )


def _finite(data: dict[str, Any]) -> dict[str, Any]:
    # JSON has no NaN or infinity; a figure that is not finite is shown as missing.
    return {
        k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in data.items()
    }


def create_app(
    source: Application | EventStore,
    *,
    metrics: PerformanceMetrics | None = None,
    registry: CollectorRegistry | None = None,
    targets: PerformanceTargets | None = None,
    alerting: PerformanceAlerting | None = None,
    health_timeout: float = 5.0,
) -> Starlette:
    """The monitoring app for an :class:`Application` (whose observers supply the
    performance metrics and the Prometheus registry) or a bare store.

    ``alerting``, if given, runs while the app runs (its checks, every
    ``alerting.interval`` seconds), and its recent alerts show on the dashboard.
    """
    sources = _resolve(source, metrics, registry, targets, alerting, health_timeout)

    async def prometheus_metrics(request: Request) -> Response:
        return Response(generate_latest(sources.registry), media_type=CONTENT_TYPE_LATEST)

    async def health(request: Request) -> Response:
        try:
            head = await asyncio.wait_for(sources.store.head_position(), sources.health_timeout)
        except Exception as exc:
            reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            _log.warning("health check failed: %s", reason)
            return JSONResponse({"status": "unavailable", "reason": reason}, status_code=503)
        return JSONResponse({"status": "ok", "head_position": head})

    async def performance(request: Request) -> Response:
        snapshot = sources.metrics.snapshot()
        report = sources.targets.check(snapshot)
        recent = list(sources.alerting.recent) if sources.alerting is not None else []
        return JSONResponse(
            {
                "snapshot": _finite(snapshot.as_dict()),
                "targets": sources.targets.as_dict(),
                "checks": [_finite(_check_dict(check)) for check in report.checks],
                "alerts": [alert.as_dict() for alert in reversed(recent)],
                "alerting_enabled": sources.alerting.enabled if sources.alerting else None,
            }
        )

    async def dashboard(request: Request) -> Response:
        return HTMLResponse((_STATIC / "dashboard.html").read_text(encoding="utf-8"))

    async def home(request: Request) -> Response:
        return RedirectResponse("/dashboard")

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if sources.alerting is None:
            yield
            return
        checks = asyncio.create_task(sources.alerting.run())
        try:
            yield
        finally:
            checks.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await checks

    get = ["GET"]  # HEAD is added by starlette; anything else is 405
    return Starlette(
        routes=[
            Route("/", home, methods=get),
            Route("/metrics", prometheus_metrics, methods=get),
            Route("/health", health, methods=get),
            Route("/dashboard", dashboard, methods=get),
            Route("/api/performance", performance, methods=get),
            Mount("/static", StaticFiles(directory=str(_STATIC)), name="static"),
        ],
        lifespan=lifespan,
    )


def _check_dict(check: Any) -> dict[str, Any]:
    return {
        "name": check.name,
        "value": check.value,
        "limit": check.limit,
        "kind": check.kind,
        "unit": check.unit,
        "status": check.status,
        "margin": check.margin,
        "text": check.describe(),
    }


async def serve(
    app_or_store: Application | EventStore | ASGIApp,
    host: str = "127.0.0.1",
    port: int = 8000,
    **options: Any,
) -> None:
    """Run the monitoring app with uvicorn until cancelled. ``app_or_store`` is an
    :class:`Application`, a store (``options`` go to :func:`create_app`), or an
    ASGI app already built."""
    import uvicorn

    if isinstance(app_or_store, Application | EventStore):
        asgi: ASGIApp = create_app(app_or_store, **options)
    elif callable(app_or_store) and not options:
        asgi = app_or_store
    else:
        raise ValidationError(
            f"serve() needs an Application, an EventStore or an ASGI app, got {app_or_store!r}"
        )
    config = uvicorn.Config(asgi, host=host, port=port, log_level="warning")
    await uvicorn.Server(config).serve()
