"""The two seams every scenario goes through: :func:`open_backend` builds a store,
:func:`run_command` runs a command on it.

Speed mechanisms (group commit, a state cache, a parallel executor, snapshots)
arrive as store or executor settings. Scenarios never build a store or call the
executor themselves, so a new toggle is wired here once, and reaches every
scenario through ``--option KEY=VALUE`` without touching them.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import typing
import uuid
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import msgspec

from eventcore.backends._group_commit import GroupCommitter
from eventcore.cache import StateCache
from eventcore.command import Command
from eventcore.demo.bank import bank_codec
from eventcore.execute import ExecutionResult, execute
from eventcore.observe import Observer, ObserverGroup
from eventcore.observed_store import store_for_observers
from eventcore.store import EventStore

BACKENDS: Final = ("memory", "sqlite", "postgres")
DEFAULT_DSN: Final = "postgresql://postgres@127.0.0.1:5432/test"
DATABASE_URL_VARIABLE: Final = "EVENTCORE_DATABASE_URL"


class BenchSetupError(Exception):
    """A backend could not be set up as asked (bad option, unreachable server)."""


# The state cache of each open store (the "cache" option, on by default): commands
# run with the executor's state cache, as an application that wants speed would.
_CACHES: weakref.WeakKeyDictionary[EventStore, StateCache] = weakref.WeakKeyDictionary()


# The "observer" option (none, noop, prometheus; default none): commands then run
# with that observer, wired as Application wires it (the store is wrapped only if
# the observer listens to store calls), to measure what observing costs an
# application. The scenario keeps the plain store, so its preparation and
# baseline are unchanged.
_OBSERVED: dict[EventStore, tuple[EventStore, ObserverGroup]] = {}
OBSERVER_CHOICES: Final = ("none", "noop", "prometheus")


def command_runner(
    store: EventStore,
) -> Callable[[Command[Any, Any]], Awaitable[ExecutionResult]]:
    """The function a scenario runs each command with on ``store``: its cache and
    observer looked up once, not per command (the weak-key lookup alone makes a
    weak reference each time)."""
    cache = _CACHES.get(store)
    target, observer = _OBSERVED.get(store) or (store, None)

    def run(command: Command[Any, Any]) -> Awaitable[ExecutionResult]:
        return execute(target, command, codec=bank_codec, cache=cache, observer=observer)

    return run


async def run_command(store: EventStore, command: Command[Any, Any]) -> ExecutionResult:
    """Run one command the way every scenario does."""
    return await command_runner(store)(command)


@dataclass(frozen=True, slots=True)
class StoreCounters:
    """The counters a run's figures are taken from: the store's state cache (hits,
    misses, commands that waited for a turn) and group committer (batches,
    appends), ``None`` where it has none."""

    cache_hits: int | None
    cache_misses: int | None
    commit_batches: int | None
    committed_appends: int | None
    turn_waits: int | None = None

    def since(self, before: StoreCounters) -> StoreCounters:
        """What each counter grew by since ``before``."""
        return StoreCounters(
            _grown(self.cache_hits, before.cache_hits),
            _grown(self.cache_misses, before.cache_misses),
            _grown(self.commit_batches, before.commit_batches),
            _grown(self.committed_appends, before.committed_appends),
            _grown(self.turn_waits, before.turn_waits),
        )


def _grown(now: int | None, then: int | None) -> int | None:
    return None if now is None or then is None else now - then


def store_counters(store: EventStore) -> StoreCounters:
    """The store's cache and group-commit counters as they stand."""
    cache = _CACHES.get(store)
    stats = cache.stats() if cache is not None else None
    # The committer is the store's own (as observe_store reaches it): the bench
    # reads its counters rather than asking every backend to expose them.
    committer = getattr(store, "_committer", None)
    batches = appends = None
    if isinstance(committer, GroupCommitter):
        batches, appends = committer.batches, committer.batched_appends
    return StoreCounters(
        stats.hits if stats is not None else None,
        stats.misses if stats is not None else None,
        batches,
        appends,
        stats.turn_waits if stats is not None else None,
    )


async def warm_cache(
    store: EventStore, command: type[Command[Any, Any]], streams: list[str]
) -> bool:
    """Warm the store's state cache for ``command`` on ``streams``; False when the
    cache is off (``--option cache=false``)."""
    cache = _CACHES.get(store)
    if cache is None:
        return False
    await cache.warm(store, command, streams, codec=bank_codec)
    return True


def _split_observer_option(options: dict[str, Any]) -> ObserverGroup | None:
    choice = str(options.pop("observer", "none")).strip().lower()
    if choice == "none":
        return None
    if choice == "noop":
        return ObserverGroup([Observer()])
    if choice == "prometheus":
        try:
            from eventcore.prometheus import PrometheusObserver
        except ImportError as exc:
            raise BenchSetupError(
                "observer=prometheus needs the metrics extra (prometheus_client)"
            ) from exc
        return ObserverGroup([PrometheusObserver()])
    raise BenchSetupError(f"unknown observer {choice!r}; choose from {', '.join(OBSERVER_CHOICES)}")


def cache_enabled(options: Mapping[str, Any]) -> bool:
    """Whether the "cache" option leaves the state cache on (the default)."""
    cache = options.get("cache", True)
    if isinstance(cache, str):
        return cache.strip().lower() not in ("false", "off", "0", "no")
    return bool(cache)


def _split_cache_option(options: Mapping[str, Any]) -> tuple[bool, dict[str, Any]]:
    rest = dict(options)
    rest.pop("cache", None)
    return cache_enabled(options), rest


def resolve_dsn(dsn: str | None) -> str:
    """--dsn, else EVENTCORE_DATABASE_URL, else the local test database."""
    return dsn or os.environ.get(DATABASE_URL_VARIABLE) or DEFAULT_DSN


@contextlib.asynccontextmanager
async def open_backend(name: str, options: Mapping[str, Any]) -> AsyncIterator[EventStore]:
    """A fresh, empty store of backend ``name``, removed again on exit.

    ``options`` go to the store unchanged (but for ``cache``, default true, which
    turns the executor's state cache on for commands run on this store, and
    ``observer``, default ``none``, see :data:`OBSERVER_CHOICES`):
    ``InMemoryEventStore(**options)``, ``SQLiteEventStore.open(path, **options)``,
    or ``PostgresConfig(**options)`` for PostgreSQL, whose ``dsn`` option names
    the server. The harness chooses the place: a temporary SQLite file, a fresh
    PostgreSQL schema ``bench_<hex>`` that is dropped afterwards.
    """
    use_cache, options = _split_cache_option(options)
    observer = _split_observer_option(options)
    if name == "memory":
        opened = _memory_store(options)
    elif name == "sqlite":
        opened = _sqlite_store(options)
    elif name == "postgres":
        opened = _postgres_store(options)
    else:
        raise BenchSetupError(f"unknown backend {name!r}; choose from {', '.join(BACKENDS)}")
    async with opened as store:
        if use_cache:
            _CACHES[store] = StateCache()
        if observer is not None:
            _OBSERVED[store] = (store_for_observers(store, observer), observer)
        try:
            yield store
        finally:
            _OBSERVED.pop(store, None)


def _structured(
    backend: str, options: Mapping[str, Any], target: Callable[..., object]
) -> dict[str, Any]:
    """Turn JSON objects given on the command line into the settings objects the
    store's parameters are typed with: ``group_commit={"enabled": false}`` becomes
    ``GroupCommitSettings(enabled=False)``. Other values pass through unchanged."""
    try:
        hints = typing.get_type_hints(target)
    except (NameError, TypeError):  # unresolvable annotations: pass values as given
        hints = {}
    structured: dict[str, Any] = {}
    for name, value in options.items():
        if isinstance(value, dict | list) and name in hints:
            try:
                value = msgspec.convert(value, hints[name])
            except msgspec.ValidationError as exc:
                raise _rejected(backend, options, exc) from exc
        structured[name] = value
    return structured


def _rejected(backend: str, options: Mapping[str, Any], exc: Exception) -> BenchSetupError:
    shown = {key: value for key, value in options.items() if key != "dsn"}  # may hold a password
    return BenchSetupError(
        f"the {backend} store refused the options {shown!r}: {exc}. "
        "Check the --option names against the store's constructor"
    )


@contextlib.asynccontextmanager
async def _memory_store(options: Mapping[str, Any]) -> AsyncIterator[EventStore]:
    from eventcore.backends.memory import InMemoryEventStore

    try:
        store = InMemoryEventStore(**_structured("memory", options, InMemoryEventStore.__init__))
    except TypeError as exc:
        raise _rejected("memory", options, exc) from exc
    try:
        yield store
    finally:
        await store.close()


@contextlib.asynccontextmanager
async def _sqlite_store(options: Mapping[str, Any]) -> AsyncIterator[EventStore]:
    from eventcore.backends.sqlite import SQLiteEventStore
    from eventcore.errors import ValidationError

    with tempfile.TemporaryDirectory(prefix="eventcore-bench-") as directory:
        settings = _structured("sqlite", options, SQLiteEventStore.open)
        try:
            store = await SQLiteEventStore.open(Path(directory) / "events.sqlite", **settings)
        except (TypeError, ValidationError) as exc:
            raise _rejected("sqlite", options, exc) from exc
        try:
            yield store
        finally:
            await store.close()


def new_schema_name() -> str:
    return f"bench_{uuid.uuid4().hex[:12]}"


@contextlib.asynccontextmanager
async def _postgres_store(options: Mapping[str, Any]) -> AsyncIterator[EventStore]:
    from eventcore.backends.postgres import PostgresConfig, PostgresEventStore
    from eventcore.errors import ValidationError

    if "schema" in options:
        raise BenchSetupError("the postgres schema is chosen by the harness (bench_<random>)")
    settings = _structured("postgres", options, PostgresConfig)
    dsn = resolve_dsn(settings.pop("dsn", None))
    schema = new_schema_name()
    try:
        config = PostgresConfig(dsn=dsn, schema=schema, **settings)
    except (TypeError, ValidationError) as exc:
        raise _rejected("postgres", options, exc) from exc
    # open() migrates in one transaction: if it fails, no schema is left behind.
    store = await PostgresEventStore.open(config)
    try:
        async with store:
            yield store
    finally:
        await drop_schema(dsn, schema)


async def drop_schema(dsn: str, schema: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(dsn, timeout=10)
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await conn.close()


async def postgres_server_version(dsn: str) -> str:
    """The server's version string; raises :class:`BenchSetupError` if unreachable."""
    import asyncpg

    try:
        conn = await asyncpg.connect(dsn, timeout=5)
    except (OSError, TimeoutError, asyncpg.PostgresError) as exc:
        raise BenchSetupError(
            f"cannot reach PostgreSQL ({type(exc).__name__}: {exc}); pass --dsn or set "
            f"{DATABASE_URL_VARIABLE}, or leave postgres out of --backend"
        ) from exc
    try:
        return str(await conn.fetchval("SHOW server_version"))
    finally:
        await conn.close()
