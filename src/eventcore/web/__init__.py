"""The monitoring web app (the ``web`` extra: starlette, uvicorn, prometheus_client).

::

    metrics, prometheus = PerformanceMetrics(), PrometheusObserver()
    app = Application(store, observers=[metrics, prometheus])
    asgi = create_app(app)          # mount it in your ASGI app, or:
    await serve(app, port=8000)     # run it alone

Read-only endpoints, GET (and HEAD) only:

- ``/metrics``: Prometheus text format, from the application's
  :class:`~eventcore.prometheus.PrometheusObserver` (or ``registry=``);
- ``/health``: a real round trip to the store (``head_position()``): 200 and
  ``{"status": "ok", ...}``, or 503 and ``{"status": "unavailable", "reason": ...}``;
- ``/dashboard``: live charts (the page polls ``/api/performance``), which work
  offline: the chart library is shipped in the package;
- ``/api/performance``: the current snapshot, the targets and how it meets
  them, and the recent alerts, as JSON.
"""

from __future__ import annotations

from eventcore.web._app import create_app, serve

__all__ = ["create_app", "serve"]
