"""The application object: configured once, used everywhere, on every store."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from eventcore import (
    Application,
    BusinessRuleViolation,
    EncodingError,
    InMemoryEventStore,
    RetriesExhausted,
    RetryPolicy,
    SQLiteEventStore,
    StoreClosed,
    ValidationError,
    open_store,
)
from eventcore.backends.postgres import PostgresEventStore
from eventcore.demo.bank import Deposit, MoneyDeposited, Transfer, bank_codec
from eventcore.store import EventStore
from eventcore.testing.faults import FaultInjectingStore
from tests import pg


async def test_execute_uses_the_applications_codec_without_passing_it(
    any_store: EventStore,
) -> None:
    app = Application(any_store, codec=bank_codec)
    await app.execute(Deposit("alice", 30))
    result = await app.execute(Transfer("alice", "bob", 10))
    assert result.events_written == 2
    events = [app.decode(e) for e in await any_store.read_stream("bob")]
    assert events == [MoneyDeposited(10)]


async def test_without_the_applications_codec_the_same_command_cannot_encode() -> None:
    # The default codec does not know the bank's events: the application is what
    # carries the right one to every call.
    app = Application(InMemoryEventStore())
    with pytest.raises(EncodingError):
        await app.execute(Deposit("alice", 30))
    assert await app.store.read_all() == []


async def test_execute_all_runs_a_batch_with_the_applications_settings(
    any_store: EventStore,
) -> None:
    app = Application(any_store, codec=bank_codec)
    await app.execute(Deposit("alice", 100))
    outcomes = await app.execute_all(
        [Transfer("alice", "bob", 60), Transfer("alice", "carol", 60)], concurrency=2
    )
    assert not isinstance(outcomes[0], Exception)
    assert isinstance(outcomes[1], BusinessRuleViolation)  # submission order per stream


async def test_a_per_call_option_overrides_the_applications() -> None:
    store = FaultInjectingStore(InMemoryEventStore())
    app = Application(store, codec=bank_codec, retry=RetryPolicy(max_retries=0))
    store.conflict_next_appends(1)
    with pytest.raises(RetriesExhausted):
        await app.execute(Deposit("a", 1))  # the application's policy: no retry
    store.conflict_next_appends(1)
    result = await app.execute(Deposit("a", 1), retry=RetryPolicy.fixed(0.0, max_retries=1))
    assert result.attempts == 2


async def test_closing_the_application_closes_its_store(tmp_path: Path) -> None:
    async with await Application.open(tmp_path / "app.sqlite", codec=bank_codec) as app:
        await app.execute(Deposit("a", 5))
    with pytest.raises(StoreClosed):
        await app.execute(Deposit("a", 5))
    async with await SQLiteEventStore.open(tmp_path / "app.sqlite") as reopened:
        assert await reopened.stream_version("a") == 1


async def test_follow_yields_the_log_through_the_application() -> None:
    app = Application(InMemoryEventStore(), codec=bank_codec)
    await app.execute(Deposit("a", 5))
    await app.execute(Deposit("b", 7))
    seen = []
    async for event in app.follow(stream_prefix="b"):
        seen.append(app.decode(event))
        break
    assert seen == [MoneyDeposited(7)]


@pytest.mark.parametrize(
    "argument",
    [{"store": "sqlite:///x"}, {"codec": "bank"}, {"retry": 3}, {"cache": True}],
    ids=["store", "codec", "retry", "cache"],
)
def test_mistyped_settings_are_refused_naming_the_value(argument: dict[str, object]) -> None:
    settings: dict[str, object] = {"store": InMemoryEventStore(), **argument}
    store = settings.pop("store")
    with pytest.raises(ValidationError, match=repr(next(iter(argument.values())))):
        Application(store, **settings)  # type: ignore[arg-type]


# -- open_store: database URLs -----------------------------------------------------


async def test_memory_url_opens_an_in_memory_store() -> None:
    store = await open_store("memory:")
    assert isinstance(store, InMemoryEventStore)
    await store.close()


@pytest.mark.parametrize("form", ["url", "path", "str-path"])
async def test_sqlite_urls_and_paths_open_the_same_file(tmp_path: Path, form: str) -> None:
    target = tmp_path / "events.sqlite"
    urls: dict[str, str | Path] = {
        "url": f"sqlite:///{target}",  # three slashes and an absolute path: four in all
        "path": target,
        "str-path": str(target),
    }
    store = await open_store(urls[form])
    try:
        assert isinstance(store, SQLiteEventStore)
    finally:
        await store.close()
    assert target.exists()


@pytest.mark.postgres
async def test_a_postgresql_url_opens_the_postgres_store_in_the_schema_it_names(
    pg_schema: str,
) -> None:
    store = await open_store(f"{pg.PG_URL}?schema={pg_schema}")
    try:
        app = Application(store, codec=bank_codec)
        await app.execute(Deposit("a", 5))
    finally:
        await store.close()
    async with await pg.fresh_store(pg_schema) as same:
        assert await same.stream_version("a") == 1


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("", "non-empty"),
        (42, "non-empty str or a Path"),
        ("mysql://db/x", "unsupported database URL 'mysql://db/x'"),
        ("sqlite://", "invalid SQLite URL"),
        ("sqlite://relative.db", "invalid SQLite URL"),
        ("redis:", "unsupported database URL"),
        ("postgresql://db/x?schema=a&schema=b", "schema= 2 times"),
        ("postgresql://db/x?schema=Bad-Name", "schema must be a lower-case SQL identifier"),
    ],
)
async def test_a_bad_database_url_is_one_clear_error(url: object, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        await open_store(url)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("url", "others", "message"),
    [
        ("sqlite:///x.sqlite", {"read_url": "postgresql://r/x"}, "PostgreSQL store only"),
        ("memory:", {"listen_url": "postgresql://l/x"}, "PostgreSQL store only"),
        ("postgresql://db/x", {"read_url": "mysql://r/x"}, "read_url must be a postgresql://"),
        (
            "postgresql://db/x?schema=a",
            {"read_url": "postgresql://r/x?schema=b"},
            "read_url names schema='b'",
        ),
        ("postgresql://db/x?pooler=pgbouncer", {}, "pooler=pgbouncer needs listen_url"),
        ("postgresql://db/x?pooler=odyssey", {}, "pooler='odyssey'"),
    ],
)
async def test_a_bad_replica_listener_or_pooler_setting_is_one_clear_error(
    url: str, others: dict[str, Any], message: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("EVENTCORE_READ_DATABASE_URL", raising=False)
    monkeypatch.delenv("EVENTCORE_LISTEN_DATABASE_URL", raising=False)
    with pytest.raises(ValidationError, match=message):
        await open_store(url, **others)


@pytest.mark.postgres
async def test_a_postgresql_url_takes_its_listener_url_from_the_environment(
    pg_schema: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EVENTCORE_LISTEN_DATABASE_URL", f"{pg.PG_URL}?schema={pg_schema}")
    store = await open_store(f"{pg.PG_URL}?schema={pg_schema}")
    try:
        assert isinstance(store, PostgresEventStore)
        assert store.config.listen_dsn == pg.PG_URL
        assert store.config.schema == pg_schema
    finally:
        await store.close()
