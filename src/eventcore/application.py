"""The application object: what an application configures once, in one place.

::

    async with await Application.open("sqlite:///bank.sqlite", codec=bank_codec) as app:
        result = await app.execute(Transfer("alice", "bob", 10))
        outcomes = await app.execute_all(transfers, concurrency=8)

:class:`Application` holds the store, the codec, the retry policy and the state
cache, and passes them to :func:`eventcore.execute` and
:func:`eventcore.execute_all` on every call, so none of them can be forgotten at
one call site. The free functions stay for code that prefers them; both run the
same executor.

:func:`open_store` turns a database URL into a store:

- ``memory:`` an :class:`~eventcore.backends.memory.InMemoryEventStore`;
- ``sqlite:///relative/path.sqlite``, ``sqlite:////absolute/path.sqlite``, or a
  plain file path: a :class:`~eventcore.backends.sqlite.SQLiteEventStore`;
- ``postgresql://user@host:port/database`` (or ``postgres://``): a
  :class:`~eventcore.backends.postgres.PostgresEventStore` (the ``postgres`` extra);
  a ``schema=name`` query parameter chooses the schema (default ``eventcore``),
  and ``pooler=pgbouncer`` says the URL reaches PgBouncer in transaction pooling
  mode (the settings of ``PostgresConfig.behind_pgbouncer``; it needs a
  ``listen_url``).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Collection, Iterable
from pathlib import Path
from typing import Any, Self, Unpack

from eventcore._command_ids import CommandId
from eventcore._plan import DEFAULT_FOLD_PAGE_SIZE
from eventcore._postgres_urls import PostgresUrls, is_postgres
from eventcore.cache import StateCache
from eventcore.codec import Codec, default_codec
from eventcore.command import Command
from eventcore.errors import StoreUnavailable, ValidationError
from eventcore.execute import ExecuteOptions, ExecutionResult, execute
from eventcore.observe import Observer, ObserverGroup
from eventcore.observed_store import store_for_observers
from eventcore.parallel import execute_all
from eventcore.projection import (
    Projection,
    ProjectionRunner,
    RunnerOptions,
    TransactionalProjection,
)
from eventcore.projection._exactly_once import runner_for
from eventcore.projection._runner import Progress
from eventcore.retry import DEFAULT_RETRY_POLICY, RetryPolicy
from eventcore.store import EventStore
from eventcore.subscription import follow
from eventcore.types import RecordedEvent

_SQLITE_SCHEME = "sqlite://"


async def open_store(
    url: str | Path,
    *,
    create: bool = True,
    read_url: str | None = None,
    listen_url: str | None = None,
) -> EventStore:
    """Open the store a database URL names (see the module documentation).

    With ``create=False`` only an existing store is opened, and nothing is written:
    a SQLite file that does not exist is refused (:class:`StoreUnavailable`), and
    PostgreSQL migrations are not applied (for tools that only look).

    For a PostgreSQL URL, ``read_url`` names a hot standby that the log's reads go
    to (``PostgresConfig.read_dsn``, docs/replicas.md) and ``listen_url`` the server
    that the connection listening for appends goes to (``listen_dsn``,
    docs/pgbouncer.md). Not given, they come from the environment variables
    ``EVENTCORE_READ_DATABASE_URL`` and ``EVENTCORE_LISTEN_DATABASE_URL`` (unset or
    empty: none). Their ``schema=`` and ``pooler=``, if given, must be ``url``'s.
    """
    if isinstance(url, str) and is_postgres(url):
        return await _open_postgres(PostgresUrls.of(url, read_url, listen_url), create)
    if read_url is not None or listen_url is not None:
        raise ValidationError(
            f"read_url and listen_url apply to a PostgreSQL store only, not to {str(url)!r}"
        )
    if isinstance(url, Path):
        return await _open_sqlite(url, create)
    return await _open_url(url, create)


async def _open_url(url: str, create: bool) -> EventStore:
    if not isinstance(url, str) or not url.strip():
        raise ValidationError(
            f"database URL must be a non-empty str or a Path, got {url!r}; "
            "use memory:, sqlite:///path.sqlite or postgresql://user@host/database"
        )
    if url == "memory:":
        from eventcore.backends.memory import InMemoryEventStore

        return InMemoryEventStore()
    if url.startswith(_SQLITE_SCHEME):
        path = url[len(_SQLITE_SCHEME) :]
        if not path.startswith("/") or path == "/":
            raise ValidationError(
                f"invalid SQLite URL {url!r}: expected sqlite:///relative/path.sqlite "
                "or sqlite:////absolute/path.sqlite"
            )
        return await _open_sqlite(Path(path[1:]), create)
    if "://" in url or url.endswith(":"):
        raise ValidationError(
            f"unsupported database URL {url!r}: use memory:, sqlite:///path.sqlite, "
            "postgresql://user@host/database, or a file path for SQLite"
        )
    return await _open_sqlite(Path(url), create)


async def _open_postgres(urls: PostgresUrls, create: bool) -> EventStore:
    from eventcore.backends.postgres import PostgresConfig, PostgresEventStore

    settings = urls.config_settings()
    if urls.pooler == "pgbouncer":
        config = PostgresConfig.behind_pgbouncer(urls.dsn, **settings)
    else:
        config = PostgresConfig(dsn=urls.dsn, **settings)
    return await PostgresEventStore.open(config, migrate=create)


async def _open_sqlite(path: Path, create: bool) -> EventStore:
    from eventcore.backends.sqlite import SQLiteEventStore

    if not create and not await asyncio.to_thread(path.is_file):
        raise StoreUnavailable(f"no SQLite database at {str(path)!r}: check the path")

    return await SQLiteEventStore.open(path)


class Application:
    """The store, codec, retry policy and state cache an application uses everywhere.

    ``store`` is any :class:`~eventcore.store.EventStore`; closing the application
    closes it. ``codec`` defaults to the default codec (where ``@event_type``
    registers); ``retry`` to 4 retries with exponential backoff; ``cache`` to none
    (pass a :class:`~eventcore.cache.StateCache` to reuse folded state, see its
    rules). ``observers`` (see :mod:`eventcore.observe`) hear every command, and
    every store call through :attr:`store`, which is then the store wrapped by
    :func:`~eventcore.observed_store.observe_store` (if an observer listens to
    store calls). Per-call options
    (``correlation_id=``, ``metadata=``, ...) go to each :meth:`execute` call;
    options given there override the application's.
    """

    def __init__(
        self,
        store: EventStore,
        *,
        codec: Codec | None = None,
        retry: RetryPolicy = DEFAULT_RETRY_POLICY,
        cache: StateCache | None = None,
        fold_page_size: int | None = DEFAULT_FOLD_PAGE_SIZE,
        observers: Iterable[Observer] = (),
    ) -> None:
        for name, value, kind in (
            ("codec", codec, (Codec, type(None))),
            ("retry", retry, RetryPolicy),
            ("cache", cache, (StateCache, type(None))),
        ):
            if not isinstance(value, kind):
                raise ValidationError(f"Application() got {name}={value!r}, of the wrong type")
        if not isinstance(store, EventStore):
            raise ValidationError(
                f"Application() needs an EventStore (read, append, close), got {store!r}"
            )
        self._store = store
        self._defaults: ExecuteOptions = {
            "codec": codec or default_codec,
            "retry": retry,
            "cache": cache,
            "fold_page_size": fold_page_size,
        }
        self._observer = _attach_observers(self, observers)

    @classmethod
    async def open(
        cls,
        url: str | Path,
        *,
        codec: Codec | None = None,
        retry: RetryPolicy = DEFAULT_RETRY_POLICY,
        cache: StateCache | None = None,
        fold_page_size: int | None = DEFAULT_FOLD_PAGE_SIZE,
        observers: Iterable[Observer] = (),
        read_url: str | None = None,
        listen_url: str | None = None,
    ) -> Application:
        """Open the store ``url`` names (see :func:`open_store`, which also takes
        ``read_url`` and ``listen_url``) and wrap it."""
        store = await open_store(url, read_url=read_url, listen_url=listen_url)
        try:
            return cls(
                store,
                codec=codec,
                retry=retry,
                cache=cache,
                fold_page_size=fold_page_size,
                observers=observers,
            )
        except BaseException:
            await store.close()
            raise

    @property
    def store(self) -> EventStore:
        return self._store

    @property
    def observer(self) -> ObserverGroup | None:
        """The application's observers as one (None without observers)."""
        return self._observer

    @property
    def codec(self) -> Codec:
        codec = self._defaults.get("codec")
        assert codec is not None  # set in __init__
        return codec

    async def execute(
        self, command: Command[Any, Any], **options: Unpack[ExecuteOptions]
    ) -> ExecutionResult:
        """Run one command (see :func:`eventcore.execute`) with this application's
        codec, retry policy and cache."""
        return await execute(self._store, command, **self._with_defaults(options))

    async def execute_all(
        self,
        commands: Iterable[Command[Any, Any]],
        *,
        concurrency: int = 16,
        command_ids: Iterable[CommandId | None] | None = None,
        **options: Unpack[ExecuteOptions],
    ) -> list[ExecutionResult | Exception]:
        """Run a batch concurrently, in submission order per stream (see
        :func:`eventcore.execute_all`); outcomes in submission order."""
        return await execute_all(
            self._store,
            commands,
            concurrency=concurrency,
            command_ids=command_ids,
            **self._with_defaults(options),
        )

    def _with_defaults(self, options: ExecuteOptions) -> ExecuteOptions:
        merged: ExecuteOptions = {**self._defaults, **options}
        return merged

    def follow(
        self,
        *,
        after: int = 0,
        stream_prefix: str | None = None,
        stream_pattern: str | None = None,
        event_types: Collection[str] | None = None,
    ) -> AsyncGenerator[RecordedEvent, None]:
        """Every event after ``after`` that passes the filters, then new ones as they
        commit (see :func:`eventcore.follow`)."""
        return follow(
            self._store,
            after=after,
            stream_prefix=stream_prefix,
            stream_pattern=stream_pattern,
            event_types=event_types,
        )

    def projection_runner(
        self,
        projection: Projection | TransactionalProjection,
        *,
        options: RunnerOptions | None = None,
        holder: str | None = None,
        progress: Progress | None = None,
        rebuild: bool = False,
    ) -> ProjectionRunner:
        """A runner for ``projection`` over this application's store, reporting to
        its observers (see :class:`~eventcore.projection.ProjectionRunner`); the
        store must keep checkpoints, leases and dead letters (every bundled one does).
        A :class:`~eventcore.projection.TransactionalProjection` gets the
        exactly-once runner (SQLite and PostgreSQL).
        """
        return runner_for(
            self._store,  # type: ignore[arg-type]  # checked by the runner
            projection,
            options=options,
            holder=holder,
            observer=self._observer,
            progress=progress,
            rebuild=rebuild,
        )

    def decode(self, event: RecordedEvent) -> Any:
        """The domain event a stored record holds, decoded by this application's codec."""
        return self.codec.decode(event)

    async def close(self) -> None:
        """Close the store (waiting for appends already accepted)."""
        await self._store.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()


def _attach_observers(app: Application, observers: object) -> ObserverGroup | None:
    """Observe the application's commands and its store, if it has observers."""
    if isinstance(observers, str | Observer) or not isinstance(observers, Iterable):
        raise ValidationError(f"observers must be a list of Observer instances, got {observers!r}")
    group = ObserverGroup(observers)
    if not group.observers:
        return None
    app._store = store_for_observers(app._store, group)
    app._defaults["observer"] = group
    return group
