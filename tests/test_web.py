"""The monitoring web app: endpoints, health against a real store, no writes."""

from __future__ import annotations

import pytest

pytest.importorskip("starlette")

from collections.abc import Iterator

import httpx
from prometheus_client import CollectorRegistry

from eventcore import Application, InMemoryEventStore, ValidationError
from eventcore.alerts import PerformanceAlerting
from eventcore.backends.postgres import PostgresConfig, PostgresEventStore
from eventcore.demo.bank import Deposit, bank_codec
from eventcore.performance import PerformanceMetrics, PerformanceTargets
from eventcore.prometheus import PrometheusObserver
from eventcore.store import EventStore
from eventcore.web import create_app
from tests import pg_cluster


def client_for(app: object) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
    return httpx.AsyncClient(transport=transport, base_url="http://monitor")


def observed(store: EventStore) -> Application:
    return Application(
        store, codec=bank_codec, observers=[PerformanceMetrics(), PrometheusObserver()]
    )


async def test_metrics_are_served_in_the_prometheus_text_format() -> None:
    app = observed(InMemoryEventStore())
    for _ in range(3):
        await app.execute(Deposit("alice", 1))
    async with client_for(create_app(app)) as client:
        response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert 'eventcore_commands_total{command="Deposit",outcome="success"} 3.0' in response.text


async def test_health_is_ok_with_the_head_position_on_a_working_store(
    any_store: EventStore,
) -> None:
    app = observed(any_store)
    await app.execute(Deposit("alice", 1))
    async with client_for(create_app(app)) as client:
        response = await client.get("/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "head_position": 1}


async def test_health_is_503_with_the_reason_when_the_store_is_closed(
    any_store: EventStore,
) -> None:
    await any_store.close()
    async with client_for(create_app(any_store)) as client:
        response = await client.get("/health")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unavailable"
    assert "StoreClosed" in body["reason"]


async def test_the_performance_endpoint_reports_snapshot_targets_and_alerts() -> None:
    metrics = PerformanceMetrics()
    app = Application(InMemoryEventStore(), codec=bank_codec, observers=[metrics])
    await app.execute(Deposit("alice", 1))
    alerting = PerformanceAlerting(metrics, PerformanceTargets(max_p50_ms=0), sinks=[])
    await alerting.check_once()
    async with client_for(create_app(app, alerting=alerting)) as client:
        data = (await client.get("/api/performance")).json()
    assert data["snapshot"]["commands"] == 1
    assert data["targets"]["max_p50_ms"] == 0
    statuses = {check["name"]: check["status"] for check in data["checks"]}
    assert statuses["latency_p50_ms"] == "missed"
    assert "latency_p50_ms" in [alert["kind"] for alert in data["alerts"]]


async def test_the_dashboard_page_and_its_chart_library_are_served_locally() -> None:
    async with client_for(create_app(InMemoryEventStore())) as client:
        page = await client.get("/dashboard")
        library = await client.get("/static/chart.umd.js")
        script = await client.get("/static/dashboard.js")
    assert page.status_code == 200
    assert "text/html" in page.headers["content-type"]
    assert 'src="/static/chart.umd.js"' in page.text
    assert "http" not in page.text.replace("http-equiv", "")  # nothing from elsewhere
    assert library.status_code == 200
    assert "Chart.js" in library.text[:200]
    assert script.status_code == 200


@pytest.mark.parametrize("path", ["/nothing", "/metrics/extra", "/static/missing.js"])
async def test_unknown_paths_are_404(path: str) -> None:
    async with client_for(create_app(InMemoryEventStore())) as client:
        assert (await client.get(path)).status_code == 404


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH"])
@pytest.mark.parametrize("path", ["/metrics", "/health", "/dashboard", "/api/performance"])
async def test_no_endpoint_accepts_a_write(method: str, path: str) -> None:
    async with client_for(create_app(InMemoryEventStore())) as client:
        response = await client.request(method, path)
    assert response.status_code == 405


async def test_a_registry_can_be_given_instead_of_found() -> None:
    registry = CollectorRegistry()
    observer = PrometheusObserver(registry, namespace="bank")
    app = Application(InMemoryEventStore(), codec=bank_codec, observers=[observer])
    await app.execute(Deposit("alice", 1))
    async with client_for(create_app(app.store, registry=registry)) as client:
        text = (await client.get("/metrics")).text
    assert "bank_events_written_total 1.0" in text


def test_create_app_refuses_something_that_is_not_a_store() -> None:
    with pytest.raises(ValidationError, match="Application or an EventStore"):
        create_app("sqlite:///x.sqlite")  # type: ignore[arg-type]


# -- /health on a PostgreSQL server that goes down (a cluster of the test's own) ----


@pytest.fixture
def own_cluster() -> Iterator[pg_cluster.Cluster]:
    yield from pg_cluster.cluster_or_skip()


@pytest.mark.postgres
async def test_health_turns_503_when_postgresql_stops_and_200_when_it_is_back(
    own_cluster: pg_cluster.Cluster,
) -> None:
    config = PostgresConfig.development(
        own_cluster.url, schema="web_health", min_connections=1, connect_timeout=2
    )
    async with await PostgresEventStore.open(config) as store:
        app = observed(store)
        await app.execute(Deposit("alice", 1))
        async with client_for(create_app(app, health_timeout=10)) as client:
            assert (await client.get("/health")).status_code == 200
            await own_cluster.stop()
            down = await client.get("/health")
            assert down.status_code == 503
            assert down.json()["status"] == "unavailable"
            assert "StoreUnavailable" in down.json()["reason"]
            await own_cluster.start()
            back = await client.get("/health")
            assert back.status_code == 200
            assert back.json() == {"status": "ok", "head_position": 1}
