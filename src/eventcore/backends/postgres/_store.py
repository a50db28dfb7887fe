"""PostgresEventStore: the production store, on asyncpg.

Appends are one round trip: a single call of the schema's ``append_batch``
function, which locks the participating streams in a fixed order, checks every
expected version, takes the global position counter, inserts the events and
returns positions and versions (see ``migrations/0001_initial.sql`` and
docs/adr/0004-postgres-store.md for why the log is commit-ordered and gapless).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Mapping,
    Sequence,
)
from typing import Any, Final, Self, TypeAlias, TypeVar

import asyncpg

from eventcore.backends._group_commit import (
    GroupCommitter,
    finishing_accepted_appends,
    lost_connection,
)
from eventcore.backends.postgres._config import PostgresConfig
from eventcore.backends.postgres._connecting import Connector
from eventcore.backends.postgres._copy import append_rows
from eventcore.backends.postgres._errors import (
    CONNECTION_ERRORS,
    DRIVER_ERRORS,
    describe_target,
    has_free_connection,
    keeps_connection,
    mapped,
    may_retry_read,
    rule_for,
    translated,
)
from eventcore.backends.postgres._group_read import GroupReader
from eventcore.backends.postgres._hosts import HostOrder
from eventcore.backends.postgres._listener import AppendListener
from eventcore.backends.postgres._migrate import migrate as run_migrations
from eventcore.backends.postgres._migrate import schema_version
from eventcore.backends.postgres._reads import PostgresReads
from eventcore.backends.postgres._replica import ReadPools, ReplayWatch, wait_on_replica
from eventcore.backends.postgres._sql import Statements
from eventcore.backends.postgres._transaction import PostgresTransaction
from eventcore.backends.postgres._transaction import check_fence as check_lease_fence
from eventcore.backends.postgres._writes import (
    BatchArrays,
    check_payload_sizes,
    duplicate_id_error,
    lock_error_outcomes,
    outcome_of,
)
from eventcore.errors import EventCoreError, StoreClosed, StoreUnavailable, ValidationError
from eventcore.store import (
    AppendOutcome,
    DeadLetter,
    Fence,
    ProjectionTransaction,
    check_checkpoint_name,
    check_checkpoint_position,
    check_dead_letter,
    check_fence,
    check_lease_args,
    check_requests,
    check_snapshot_key,
)
from eventcore.types import (
    AppendRequest,
    AppendResult,
    Snapshot,
    trusted_stream_id,
)

T = TypeVar("T")
_NAME: Final = "PostgresEventStore"
# What a pool hands out: a proxy with the Connection interface (generic in the
# stubs only, hence the string).
Connection: TypeAlias = "asyncpg.pool.PoolConnectionProxy[asyncpg.Record]"

_LOCK_CONFLICTS = (
    asyncpg.exceptions.DeadlockDetectedError,
    asyncpg.exceptions.LockNotAvailableError,
    asyncpg.exceptions.SerializationError,
)


async def _no_reset(_conn: asyncpg.Connection) -> None:
    """asyncpg's default reset costs a round trip per release; we leave no session
    state behind (no LISTEN, transaction-scoped locks, a COPY table emptied at commit)."""


class PostgresEventStore(PostgresReads):
    """Implements :class:`~eventcore.store.EventStore`, checkpoints and leases.

    Open it with :meth:`open`, which connects, and by default migrates the schema::

        store = await PostgresEventStore.open("postgresql://app@db/app")
        store = await PostgresEventStore.open(PostgresConfig.production(dsn, schema="bank"))
    """

    def __init__(
        self,
        pool: asyncpg.Pool,
        config: PostgresConfig,
        dsn: str,
        hosts: HostOrder | None = None,
        *,
        read_pool: asyncpg.Pool | None = None,
        connectors: Mapping[asyncpg.Pool, Connector] | None = None,
    ) -> None:
        self._pool = pool
        # How each pool connects: what its hosts answered when that failed.
        self._connectors = dict(connectors or {})
        # Where reads go when a replica is configured (read_dsn); else all to pool.
        self._reads = ReadPools.route(
            pool, read_pool, command_reads=config.command_reads_on_replica
        )
        self._replay = None if read_pool is None else ReplayWatch(self._replica_head)
        self._config = config
        self._dsn = dsn
        # A multi-host DSN's hosts, tried in turn by the pool and the listener.
        self._hosts = hosts
        self._sql = Statements.for_schema(config.quoted_schema)
        self._listener = AppendListener(
            self._connect_one,
            config.channel,
            self._sql.head_position,
            current=None if hosts is None else hosts.on_current_host,
        )
        if hosts is not None:
            # Waiters on a connection to the old host would wait in vain: at once.
            hosts.when_moved(self._listener.drop_if_left_behind)
        self._recycler = asyncio.get_running_loop().create_task(self._recycle_connections())
        settings = config.group_commit
        self._committer = (
            GroupCommitter(
                self.append_many, settings, store_name=_NAME, store_wide=_fails_every_append
            )
            if settings.enabled
            else None
        )
        self._group_reader = (
            GroupReader(self._fetch_slots, self._read_streams_now) if config.group_reads else None
        )
        self._closed = False
        self._closing: asyncio.Task[None] | None = None

    # -- lifecycle -----------------------------------------------------------------

    @classmethod
    async def open(
        cls, config: PostgresConfig | str | None = None, *, migrate: bool = True
    ) -> PostgresEventStore:
        """Connect (DSN from ``config``, else ``EVENTCORE_DATABASE_URL``, see
        :meth:`PostgresConfig.resolved`) and, unless ``migrate=False``, bring the
        schema up to date."""
        if config is None or isinstance(config, str):
            config = PostgresConfig(dsn=config)
        config = config.resolved()
        dsn = config.resolved_dsn()
        hosts = HostOrder.of(dsn)
        connector = Connector(dsn, hosts)
        pool = await _create_pool(config, dsn, connector, hosts)
        connectors = {pool: connector}
        read_pool = None
        if config.read_dsn is not None:
            read_connector = Connector(config.read_dsn, HostOrder.of(config.read_dsn))
            try:
                read_pool = await _create_pool(
                    config, config.read_dsn, read_connector, HostOrder.of(config.read_dsn)
                )
            except BaseException:
                pool.terminate()
                raise
            connectors[read_pool] = read_connector
        store = cls(pool, config, dsn, hosts, read_pool=read_pool, connectors=connectors)
        if migrate:
            try:
                await store.migrate()
            except BaseException:
                await store.close()
                raise
        return store

    async def migrate(self) -> int:
        """Apply pending schema migrations; return how many. Safe to run concurrently."""
        async with self._connection("migrate") as conn:
            return await run_migrations(
                conn, self._config.schema, self._config.quoted_schema, self._config.channel
            )

    async def schema_version(self) -> int:
        async with self._connection("schema_version") as conn:
            return await schema_version(conn, self._config.quoted_schema)

    @property
    def config(self) -> PostgresConfig:
        return self._config

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Refuse new work, finish the appends already accepted (group commit waits
        up to its ``close_timeout``), then close the connections. Idempotent; every
        concurrent caller returns once the store is closed."""
        if self._closing is None:
            self._closed = True
            self._closing = asyncio.ensure_future(self._shut_down())
        await asyncio.shield(self._closing)

    async def _shut_down(self) -> None:
        if self._committer is not None:
            await self._committer.close()
        self._recycler.cancel()
        await self._listener.close()
        for pool in (self._pool, self._reads.replica):
            if pool is None:
                continue
            with contextlib.suppress(*CONNECTION_ERRORS, TimeoutError):
                await asyncio.wait_for(pool.close(), timeout=self._config.command_timeout)
            pool.terminate()

    def _check_open(self) -> None:
        # close() lets the group committer finish the appends accepted before it.
        if self._closed and not finishing_accepted_appends():
            raise StoreClosed(_NAME)

    async def _recycle_connections(self) -> None:
        # asyncpg has no per-connection lifetime; expiring the pool every
        # max_lifetime replaces each connection (idle ones at once, busy ones on
        # release), so none lives much longer than max_lifetime.
        while True:
            await asyncio.sleep(self._config.max_lifetime)
            await self._pool.expire_connections()
            if self._reads.replica is not None:
                await self._reads.replica.expire_connections()

    async def _connect_one(self) -> asyncpg.Connection:
        # The listener's own connection: LISTEN holds a session, so it may need a
        # route of its own past a transaction pooler.
        # A multi-host DSN: the listener connects the way the pool does.
        if self._config.listen_dsn is None:
            dsn, hosts = self._dsn, self._hosts
        else:
            dsn, hosts = self._config.listen_dsn, HostOrder.of(self._config.listen_dsn)
        connect = asyncpg.connect if hosts is None else hosts.connect
        return await connect(dsn, **_connect_kwargs(self._config))

    def _connection(self, operation: str, pool: asyncpg.Pool | None = None) -> _Borrowed:
        """``async with self._connection(operation) as conn``: a pooled connection
        (from the primary's pool unless ``pool`` says) for one operation; driver
        errors are translated by the table in ``_errors``, and a connection left in
        doubt is discarded."""
        return _Borrowed(self, operation, self._pool if pool is None else pool)

    async def _acquire(self, operation: str, pool: asyncpg.Pool) -> Connection:
        # A free connection is taken without asyncpg's timeout: with one, asyncpg
        # arms a timer on the loop for the acquire and another for the release
        # (a timer costs CPU, and cancelled ones stay in the loop's heap). Only a
        # wait for a busy pool needs bounding.
        timeout = None if has_free_connection(pool) else self._config.acquire_timeout
        connector = self._connectors.get(pool)
        counts = (0, 0) if connector is None else (connector.failures, connector.successes)
        try:
            return await pool.acquire(timeout=timeout)
        except TimeoutError as exc:
            self._raise_if_cannot_connect(operation, connector, counts, exc)
            raise StoreUnavailable(
                f"{operation}: no database connection free within "
                f"{self._config.acquire_timeout} s (max_connections="
                f"{self._config.max_connections})"
            ) from exc
        except DRIVER_ERRORS as exc:
            if self._closed:
                raise StoreClosed("PostgresEventStore") from exc
            self._raise_if_cannot_connect(operation, connector, counts, exc)
            with translated(operation):
                raise

    @staticmethod
    def _raise_if_cannot_connect(
        operation: str,
        connector: Connector | None,
        counts: tuple[int, int],
        exc: BaseException,
    ) -> None:
        """An acquire that failed, or timed out, because the pool could not connect
        (every host refused, none writable, none answering) says so, and what each
        host answered, rather than blame a busy pool."""
        if connector is None:
            return
        trouble = connector.trouble_since(*counts)
        if trouble is not None:
            raise StoreUnavailable(f"{operation}: {trouble}") from exc

    async def _give_back(self, conn: Connection, keep: bool, pool: asyncpg.Pool) -> None:
        """Release a connection for reuse, or discard it: a discarded connection
        frees its pool slot at once, and the pool connects anew on demand."""
        if not keep:
            await self._discard(conn)
            return
        try:
            await pool.release(conn)
        except DRIVER_ERRORS:
            # The operation itself is over (an append may have committed): a
            # connection that cannot be released is dropped, not reported.
            _terminate(conn)

    async def _discard(self, conn: Connection) -> None:
        # close(), not terminate(): it first lets asyncpg's cancellation of an
        # abandoned statement (timed out, or its task cancelled) reach the server.
        # A terminated client alone goes unnoticed by a backend waiting on a lock,
        # and the statement would go on to commit. close() aborts the connection
        # if it fails; one the pool already took back refuses (InterfaceError).
        with contextlib.suppress(*DRIVER_ERRORS):
            await conn.close(timeout=self._config.command_timeout)

    async def _read(
        self,
        operation: str,
        run: Callable[[Connection], Awaitable[T]],
        pool: asyncpg.Pool | None = None,
    ) -> T:
        """Run a read (on the primary unless ``pool`` says), once more on a fresh
        connection if the first one was lost (after a server restart the pool may
        still hold dead connections)."""
        try:
            async with self._connection(operation, pool) as conn:
                return await run(conn)
        except StoreUnavailable as exc:
            # Only where the table allows: a timeout would just time out again.
            if not may_retry_read(exc):
                raise
        async with self._connection(operation, pool) as conn:
            return await run(conn)

    async def _rows(
        self, operation: str, sql: str, *args: object, pool: asyncpg.Pool | None = None
    ) -> list[Any]:
        return await self._read(operation, lambda conn: conn.fetch(sql, *args), pool)

    # -- appends -------------------------------------------------------------------

    async def append(self, request: AppendRequest) -> AppendResult:
        self._check_open()
        check_requests(request)
        # Refuse an oversized request here, alone, before it can join a batch.
        check_payload_sizes(request, self._config.max_payload_bytes)
        if self._committer is not None:
            return await self._committer.append(request)
        (outcome,) = await self.append_many([request])
        if isinstance(outcome, EventCoreError):
            raise outcome
        return outcome

    async def append_many(self, requests: Sequence[AppendRequest]) -> list[AppendOutcome]:
        """Several independent appends in one transaction: one round trip, or a few by COPY.

        Each is checked against the versions the ones before it left, exactly as if
        they were made one after another; a conflict is returned in its place and
        does not affect the others. A request that fails the whole transaction (a
        duplicate event id) raises for the batch; a lock error (deadlock, lock
        timeout) gives each request its own outcome, as lock_error_outcomes says.
        """
        self._check_open()
        check_requests(*requests)
        if not requests:
            return []
        arrays = BatchArrays.build(requests, self._config.max_payload_bytes)
        async with self._connection("append") as conn:
            try:
                rows = await append_rows(conn, self._sql, arrays, self._config.copy_threshold)
            except asyncpg.UniqueViolationError as exc:
                ids = [event.event_id for request in requests for event in request.events]
                stored = await conn.fetch(self._sql.stored_event_ids, ids)
                duplicate = duplicate_id_error(requests, [row[0] for row in stored])
                if duplicate is None:
                    raise  # not an event id's: translated() makes it a StoreError
                raise duplicate from exc
            except _LOCK_CONFLICTS as exc:
                versions = await conn.fetch(self._sql.current_versions, arrays.all_streams())
                return lock_error_outcomes(requests, versions, exc)
        return [outcome_of(row, request) for row, request in zip(rows, requests, strict=True)]

    # -- reads (the rest in _reads) -------------------------------------------------

    async def wait_for_append(self, after: int, max_wait: float) -> None:
        """Return soon after the log grows past ``after`` (LISTEN/NOTIFY), or after
        ``max_wait`` seconds; the caller reads the log either way."""
        self._check_open()
        if self._replay is None:
            await self._listener.wait_past(after, max_wait)
        else:
            await wait_on_replica(self._listener, self._replay, after, max_wait)

    async def primary_head_position(self) -> int:
        """The log's head on the primary; ``head_position`` reads the replica when
        one is configured (see :class:`~eventcore.store.ReplicaReads`)."""
        self._check_open()
        rows = await self._rows("head_position on the primary", self._sql.head_position)
        return int(rows[0][0])

    async def wait_for_replica(self, position: int, max_wait: float) -> int:
        """Wait until the replica has replayed the log up to ``position`` (polling
        its head, as followers do), at most ``max_wait`` seconds; the log's head as
        read there then. Without a replica, the head at once."""
        self._check_open()
        if self._replay is not None:
            await self._replay.wait_past(position - 1, max_wait)
        return await self.head_position()

    async def _replica_head(self) -> int:
        rows = await self._rows(
            "head_position on the replica", self._sql.head_position, pool=self._reads.replica
        )
        return int(rows[0][0])

    # -- snapshots -----------------------------------------------------------------

    async def save_snapshot(self, snapshot: Snapshot) -> bool:
        check_snapshot_key(snapshot.key)
        streams = [s for s, _ in snapshot.versions]
        versions = [v for _, v in snapshot.versions]
        async with self._connection("save_snapshot") as conn:
            stored = await conn.fetchval(
                self._sql.save_snapshot, snapshot.key, streams, versions, snapshot.state
            )
        return stored is not None

    async def load_snapshot(self, key: str) -> Snapshot | None:
        check_snapshot_key(key)

        async def run(conn: Connection) -> Snapshot | None:
            row = await conn.fetchrow(self._sql.load_snapshot, key)
            if row is None:
                return None
            pairs = tuple(
                (trusted_stream_id(s), int(v)) for s, v in zip(row[1], row[2], strict=True)
            )
            return Snapshot(row[0], pairs, bytes(row[3]))

        return await self._read("load_snapshot", run, self._reads.command)

    # -- checkpoints and leases ----------------------------------------------------

    async def save_checkpoint(
        self, name: str, position: int, *, fence: Fence | None = None
    ) -> None:
        check_checkpoint_name(name)
        check_checkpoint_position(position)
        checked = check_fence(fence)
        async with self._connection("save_checkpoint") as conn:
            if checked is None:
                await conn.execute(self._sql.save_checkpoint, name, position)
                return
            async with conn.transaction():
                await check_lease_fence(conn, self._sql.lease_fence, checked)
                await conn.execute(self._sql.save_checkpoint, name, position)

    @contextlib.asynccontextmanager
    async def checkpoint_transaction(
        self, name: str, position: int, *, fence: Fence | None = None
    ) -> AsyncIterator[ProjectionTransaction]:
        """See :class:`~eventcore.store.TransactionalCheckpointStore`: one pooled
        connection, one transaction, committed with the (fenced) checkpoint."""
        check_checkpoint_name(name)
        check_checkpoint_position(position)
        checked = check_fence(fence)
        async with self._connection("checkpoint_transaction") as conn:
            transaction = PostgresTransaction(conn)
            try:
                async with conn.transaction():
                    yield transaction
                    if checked is not None:
                        await check_lease_fence(conn, self._sql.lease_fence, checked)
                    await conn.execute(self._sql.save_checkpoint, name, position)
            finally:
                transaction.close()

    async def load_checkpoint(self, name: str) -> int | None:
        check_checkpoint_name(name)

        async def run(conn: Connection) -> int | None:
            value = await conn.fetchval(self._sql.load_checkpoint, name)
            return None if value is None else int(value)

        return await self._read("load_checkpoint", run)

    async def delete_checkpoint(self, name: str) -> None:
        check_checkpoint_name(name)
        async with self._connection("delete_checkpoint") as conn:
            await conn.execute(self._sql.delete_checkpoint, name)

    async def checkpoint_names(self) -> list[str]:
        async def run(conn: Connection) -> list[str]:
            return [row[0] for row in await conn.fetch(self._sql.checkpoint_names)]

        return await self._read("checkpoint_names", run)

    async def acquire_lease(self, name: str, holder: str, ttl: float) -> bool:
        return await self.acquire_fenced_lease(name, holder, ttl) is not None

    async def acquire_fenced_lease(self, name: str, holder: str, ttl: float) -> int | None:
        check_lease_args(name, holder, ttl)
        async with self._connection("acquire_lease") as conn:
            token = await conn.fetchval(self._sql.acquire_lease, name, holder, float(ttl))
            return None if token is None else int(token)

    async def release_lease(self, name: str, holder: str) -> None:
        check_lease_args(name, holder)
        async with self._connection("release_lease") as conn:
            await conn.execute(self._sql.release_lease, name, holder)

    async def lease_holder(self, name: str) -> str | None:
        check_lease_args(name, "-")

        async def run(conn: Connection) -> str | None:
            holder: str | None = await conn.fetchval(self._sql.lease_holder, name)
            return holder

        return await self._read("lease_holder", run)

    # -- dead letters --------------------------------------------------------------

    async def record_dead_letter(self, letter: DeadLetter) -> None:
        check_dead_letter(letter)
        async with self._connection("record_dead_letter") as conn:
            await conn.execute(
                self._sql.record_dead_letter,
                letter.projection,
                letter.position,
                letter.event_id,
                letter.stream_id,
                letter.event_type,
                letter.error,
                letter.failed_at,
            )

    async def dead_letters(self, projection: str) -> list[DeadLetter]:
        check_checkpoint_name(projection)

        async def run(conn: Connection) -> list[DeadLetter]:
            rows = await conn.fetch(self._sql.dead_letters, projection)
            return [DeadLetter(projection, int(r[0]), *r[1:]) for r in rows]

        return await self._read("dead_letters", run)

    async def clear_dead_letters(self, projection: str) -> None:
        check_checkpoint_name(projection)
        async with self._connection("clear_dead_letters") as conn:
            await conn.execute(self._sql.clear_dead_letters, projection)


class _Borrowed:
    """What :meth:`PostgresEventStore._connection` returns. A class, not an
    ``@asynccontextmanager`` (with ``translated`` inside): every read goes through
    it, and the generator-based pair cost about 4 us of CPU more per read."""

    __slots__ = ("_conn", "_operation", "_pool", "_store")

    def __init__(self, store: PostgresEventStore, operation: str, pool: asyncpg.Pool) -> None:
        self._store = store
        self._operation = operation
        self._pool = pool

    async def __aenter__(self) -> Connection:
        self._store._check_open()
        self._conn = await self._store._acquire(self._operation, self._pool)
        return self._conn

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: object
    ) -> None:
        keep = exc is None or keeps_connection(exc)
        await self._store._give_back(self._conn, keep, self._pool)
        if exc is not None:
            rule = rule_for(exc) if isinstance(exc, DRIVER_ERRORS) else None
            if rule is not None:
                raise mapped(self._operation, exc, rule) from exc


def _fails_every_append(exc: Exception) -> bool:
    """Whether a failed group commit failed for every append in it: the connection
    was lost, none was free in time, or the server did not answer in time (the
    error table maps these to StoreUnavailable). Any other failure (a value or rule
    the database refuses) is charged to one append."""
    cause = exc.__cause__ if isinstance(exc, EventCoreError) else exc
    rule = rule_for(cause)
    if rule is not None:
        return rule.error is StoreUnavailable
    return lost_connection(exc)


def _terminate(conn: Connection) -> None:
    # A connection that closed on its own was already taken back by the pool,
    # whose proxy then refuses every call: nothing is left to terminate.
    with contextlib.suppress(asyncpg.InterfaceError):
        conn.terminate()


def _connect_kwargs(config: PostgresConfig) -> dict[str, Any]:
    settings = {"application_name": config.application_name}
    if config.statement_timeout_at_connect:
        # The server cancels a runaway statement even if the client is gone.
        settings["statement_timeout"] = str(int(config.command_timeout * 1000))
    return {
        "timeout": config.connect_timeout,
        "command_timeout": config.command_timeout,
        "statement_cache_size": config.statement_cache_size,
        "server_settings": settings,
    }


async def _create_pool(
    config: PostgresConfig, dsn: str, connector: Connector, hosts: HostOrder | None
) -> asyncpg.Pool:
    target = describe_target(dsn)
    # Each host of a multi-host DSN gets connect_timeout of its own (see _hosts).
    hosts_count = 1 if hosts is None else hosts.count
    try:
        pool = await asyncio.wait_for(
            asyncpg.create_pool(
                dsn,
                connect=connector.connect,
                min_size=config.min_connections,
                max_size=config.max_connections,
                max_inactive_connection_lifetime=config.idle_timeout,
                reset=_no_reset,
                **_connect_kwargs(config),
            ),
            # each connection has connect_timeout; this bounds the whole start-up
            timeout=config.connect_timeout * 2 * hosts_count,
        )
    except (asyncpg.exceptions.ClientConfigurationError, ValueError) as exc:
        # The driver's message may quote the DSN, password included: not repeated.
        raise ValidationError(
            f"invalid PostgreSQL DSN for {target} ({type(exc).__name__}); expected "
            "postgresql://user:password@host:port/database"
        ) from exc
    except asyncpg.exceptions.InvalidAuthorizationSpecificationError as exc:
        raise StoreUnavailable(f"PostgreSQL at {target} refused the login: {exc}") from exc
    except asyncpg.exceptions.InvalidCatalogNameError as exc:
        raise StoreUnavailable(f"PostgreSQL at {target}: {exc}") from exc
    except TimeoutError as exc:
        raise StoreUnavailable(
            f"cannot connect to PostgreSQL at {target} within {config.connect_timeout} s"
        ) from exc
    except CONNECTION_ERRORS as exc:
        raise StoreUnavailable(
            f"cannot connect to PostgreSQL at {target}: {exc}{_pooler_hint(exc)}"
        ) from exc
    except asyncpg.PostgresError as exc:
        raise StoreUnavailable(f"cannot connect to PostgreSQL at {target}: {exc}") from exc
    assert pool is not None
    return pool


def _pooler_hint(exc: BaseException) -> str:
    # PgBouncer refuses startup parameters it does not track, statement_timeout
    # among them; the fix is on our side of the connection.
    if "unsupported startup parameter" not in str(exc):
        return ""
    return (
        "; a connection pooler such as PgBouncer refuses it: use "
        "PostgresConfig.behind_pgbouncer(...) or statement_timeout_at_connect=False "
        "(see docs/pgbouncer.md)"
    )
