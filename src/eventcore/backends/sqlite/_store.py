"""The asyncio face of the SQLite store: argument checks here, SQL on worker threads.

Threading: one writer thread owns the only connection that writes (appends,
checkpoints, leases) and the schema; a small pool of reader threads each owns a
read-only connection. Work crosses over with ``loop.run_in_executor``, one hop per
call, so no sqlite3 call ever runs on the event loop thread. WAL mode lets the
readers read while the writer writes; appends inside one process queue on the
writer thread, and across processes on SQLite's write lock. A waiting reader
(:meth:`SQLiteEventStore.wait_for_append`) is woken at once by this store's own
appends and, for other processes' commits, by a watcher thread that checks
``PRAGMA data_version`` on its own connection every ``WATCH_INTERVAL`` seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import sqlite3
import threading
import uuid
from collections.abc import AsyncIterator, Callable, Collection, Iterable, Mapping, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from typing import Final, Self, TypeVar, get_args

from eventcore._stream_list import check_list_streams, prefix_upper_bound
from eventcore.backends._common import (
    check_log_read,
    check_stream_read,
    check_streams_read,
)
from eventcore.backends._group_commit import (
    GroupCommitSettings,
    GroupCommitter,
    finishing_accepted_appends,
    lost_connection,
)
from eventcore.backends.sqlite import _ops
from eventcore.backends.sqlite._errors import sqlite_translated
from eventcore.backends.sqlite._schema import Synchronous, connect_reader, connect_writer
from eventcore.backends.sqlite._session import WriterSession
from eventcore.errors import EventCoreError, StoreClosed, ValidationError
from eventcore.store import (
    AppendOutcome,
    DeadLetter,
    Fence,
    LogFilter,
    PagedReads,
    ProjectionTransaction,
    StreamSummary,
    check_checkpoint_name,
    check_checkpoint_position,
    check_dead_letter,
    check_event_ids,
    check_fence,
    check_lease_args,
    check_requests,
    check_snapshot_key,
)
from eventcore.types import AppendRequest, AppendResult, RecordedEvent, Snapshot, StreamId

T = TypeVar("T")
Job = Callable[[sqlite3.Connection], T]

_NAME: Final = "SQLiteEventStore"

# How often a waiting reader asks whether another process committed. SQLite has no
# notifications; PRAGMA data_version reads no table, so 100 checks a second per
# waiting reader cost far less than a page read and keep the wake-up latency
# (commit to delivery) around ten milliseconds instead of the poll interval.
WATCH_INTERVAL: Final = 0.01


class SQLiteEventStore(PagedReads):
    """Implements :class:`~eventcore.store.EventStore`, checkpoints and leases on one
    SQLite file, which several processes may share.

    Open it with ``await SQLiteEventStore.open(path)`` or ``async with
    SQLiteEventStore(path) as store``; the schema is created on first use.

    ``busy_timeout``: seconds to wait for another process's write lock before an
    operation fails with :class:`~eventcore.errors.StoreUnavailable`.
    ``synchronous``: ``"FULL"`` (default) survives power loss; ``"NORMAL"`` is
    faster and survives an application crash, but may lose the last transactions
    on power loss. ``group_commit``: concurrent appends share one transaction (and
    one fsync); on by default, see :class:`GroupCommitSettings`.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        busy_timeout: float = 30.0,
        synchronous: Synchronous = "FULL",
        reader_threads: int = 2,
        group_commit: GroupCommitSettings | None = None,
    ) -> None:
        self._path = _check_path(path)
        if isinstance(busy_timeout, bool) or not isinstance(busy_timeout, int | float):
            raise ValidationError(f"busy_timeout must be seconds >= 0, got {busy_timeout!r}")
        if not busy_timeout >= 0:
            raise ValidationError(f"busy_timeout must be seconds >= 0, got {busy_timeout!r}")
        if synchronous not in get_args(Synchronous):
            raise ValidationError(f'synchronous must be "FULL" or "NORMAL", got {synchronous!r}')
        if type(reader_threads) is not int or reader_threads < 1:
            raise ValidationError(f"reader_threads must be a positive int, got {reader_threads!r}")
        self._busy_timeout = float(busy_timeout)
        self._synchronous = synchronous
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="eventcore-sqlite-writer")
        self._readers = ThreadPoolExecutor(
            reader_threads, thread_name_prefix="eventcore-sqlite-reader"
        )
        # One thread, hence one connection: data_version is only comparable
        # between two reads on the same connection.
        self._watcher = ThreadPoolExecutor(1, thread_name_prefix="eventcore-sqlite-watch")
        self._appended = asyncio.Event()
        self._writer_conn: sqlite3.Connection | None = None
        self._reader_conns: list[sqlite3.Connection] = []
        self._reader_conns_lock = threading.Lock()
        self._local = threading.local()
        self._start_lock = asyncio.Lock()
        self._started = False
        self._closed = False
        self._closing: asyncio.Future[None] | None = None
        settings = group_commit or GroupCommitSettings()
        self._committer = (
            GroupCommitter(
                self.append_many, settings, store_name=_NAME, store_wide=_fails_every_append
            )
            if settings.enabled
            else None
        )

    @classmethod
    async def open(
        cls,
        path: str | os.PathLike[str],
        *,
        busy_timeout: float = 30.0,
        synchronous: Synchronous = "FULL",
        reader_threads: int = 2,
        group_commit: GroupCommitSettings | None = None,
    ) -> Self:
        """Open (creating if needed) the file and its schema."""
        store = cls(
            path,
            busy_timeout=busy_timeout,
            synchronous=synchronous,
            reader_threads=reader_threads,
            group_commit=group_commit,
        )
        await store._open_or_close()
        return store

    async def __aenter__(self) -> Self:
        await self._open_or_close()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    @property
    def path(self) -> str:
        return self._path

    # -- lifecycle and thread hand-over ------------------------------------------------

    async def _open_or_close(self) -> None:
        try:
            await self._start()
        except BaseException:
            await self.close()
            raise

    async def _start(self) -> None:
        async with self._start_lock:
            if self._started:
                return
            self._check_open()
            await self._submit(self._writer, self._open_writer)
            self._started = True

    def _open_writer(self) -> None:
        with self._translated():
            self._writer_conn = connect_writer(self._path, self._busy_timeout, self._synchronous)

    async def close(self) -> None:
        """Refuse new work, finish the appends already accepted (group commit waits
        up to its ``close_timeout``), then close every connection. Idempotent; every
        concurrent caller returns once the store is closed."""
        if self._closing is None:
            self._closed = True
            self._closing = asyncio.ensure_future(self._shut_down())
        await asyncio.shield(self._closing)

    async def _shut_down(self) -> None:
        if self._committer is not None:
            await self._committer.close()
        loop = asyncio.get_running_loop()
        closing = loop.run_in_executor(self._writer, self._close_connections)
        self._writer.shutdown(wait=False)  # the thread exits after the queued close
        await closing

    def _close_connections(self) -> None:
        # On the writer thread, behind every append already queued there.
        self._readers.shutdown(wait=True)  # reads already handed over finish first
        self._watcher.shutdown(wait=True)
        with self._reader_conns_lock:
            conns, self._reader_conns = self._reader_conns, []
        if self._writer_conn is not None:
            conns.append(self._writer_conn)
            self._writer_conn = None
        for conn in conns:
            conn.close()

    def _check_open(self) -> None:
        # close() lets the group committer finish the appends accepted before it.
        if self._closed and not finishing_accepted_appends():
            raise StoreClosed(_NAME)

    async def _submit(self, executor: Executor, fn: Callable[[], T]) -> T:
        try:
            future = asyncio.get_running_loop().run_in_executor(executor, fn)
        except RuntimeError as exc:  # the pool was shut down by close()
            raise StoreClosed(_NAME) from exc
        return await future

    async def _write(self, job: Job[T]) -> T:
        if not self._started:
            await self._start()
        return await self._submit(self._writer, lambda: self._on_writer(job))

    async def _read(self, job: Job[T]) -> T:
        if not self._started:
            await self._start()
        return await self._submit(self._readers, lambda: self._on_reader(job))

    def _on_writer(self, job: Job[T]) -> T:
        conn = self._writer_conn
        if conn is None:
            raise StoreClosed(_NAME)
        with self._translated():
            return job(conn)

    def _on_reader(self, job: Job[T]) -> T:
        with self._translated():
            conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
            if conn is None:
                conn = connect_reader(self._path, self._busy_timeout)
                with self._reader_conns_lock:
                    self._reader_conns.append(conn)
                self._local.conn = conn
            return job(conn)

    def _translated(self) -> contextlib.AbstractContextManager[None]:
        return sqlite_translated(self._path, self._busy_timeout)

    # -- events ------------------------------------------------------------------------

    async def append(self, request: AppendRequest) -> AppendResult:
        self._check_open()
        check_requests(request)
        if self._committer is not None:
            return await self._committer.append(request)
        result = await self._write(lambda conn: _ops.append(conn, request))
        self._wake_waiters()
        return result

    async def append_many(self, requests: Sequence[AppendRequest]) -> list[AppendOutcome]:
        """Several appends in one transaction; see :class:`~eventcore.store.BatchAppender`."""
        self._check_open()
        check_requests(*requests)
        if not requests:
            return []
        batch = list(requests)
        try:
            return await self._write(lambda conn: _ops.append_many(conn, batch))
        finally:
            self._wake_waiters()  # they read the head themselves: a spurious wake is harmless

    @staticmethod
    def _watch_job(seen: int | None) -> Job[tuple[int, int | None]]:
        return lambda conn: _ops.head_if_changed(conn, seen)

    def _wake_waiters(self) -> None:
        self._appended.set()
        self._appended = asyncio.Event()

    async def wait_for_append(self, after: int, max_wait: float) -> None:
        """Return soon after the log grows past ``after``, or after ``max_wait``
        seconds; the caller reads the log either way. Commits that do not grow the
        log (checkpoints, leases) do not wake the caller."""
        self._check_open()
        if not self._started:
            await self._start()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max_wait
        seen: int | None = None
        while True:
            self._check_open()
            appended = self._appended  # before the check: an append after it sets it
            seen, head = await self._submit(
                self._watcher, functools.partial(self._on_reader, self._watch_job(seen))
            )
            if head is not None and head > after:
                return
            left = deadline - loop.time()
            if left <= 0:
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(appended.wait(), min(WATCH_INTERVAL, left))

    async def read_stream(
        self, stream_id: str, *, from_version: int = 1, limit: int | None = None
    ) -> list[RecordedEvent]:
        self._check_open()
        stream, start, limit = check_stream_read(stream_id, from_version, limit)
        return await self._read(lambda conn: _ops.read_stream(conn, stream, start, limit))

    async def read_streams(
        self,
        stream_ids: Iterable[str],
        *,
        from_versions: Mapping[str, int] | None = None,
        limit: int | None = None,
    ) -> dict[str, list[RecordedEvent]]:
        self._check_open()
        starts, limit = check_streams_read(stream_ids, from_versions, limit)
        if not starts:
            return {}
        return await self._read(lambda conn: _ops.read_streams(conn, starts, limit))

    async def stream_version(self, stream_id: str) -> int:
        self._check_open()
        stream = StreamId(stream_id)
        return await self._read(lambda conn: _ops.stream_version(conn, stream))

    async def head_position(self) -> int:
        self._check_open()
        return await self._read(_ops.head_position)

    async def list_streams(
        self, *, prefix: str | None = None, after: str | None = None, limit: int = 100
    ) -> list[StreamSummary]:
        self._check_open()
        start, cursor, limit = check_list_streams(prefix, after, limit)
        # A range on the (stream_id, stream_version) index: BINARY collation is code
        # point order, so the streams with a prefix are one contiguous run of it.
        end = prefix_upper_bound(start)
        sql = (
            "SELECT stream_id, max(stream_version) FROM events"
            " WHERE stream_id >= ? AND stream_id > ? AND substr(stream_id, 1, ?) = ?"
            + ("" if end is None else " AND stream_id < ?")
            + " GROUP BY stream_id ORDER BY stream_id LIMIT ?"
        )
        params = (start, cursor, len(start), start, *([] if end is None else [end]), limit)

        def query(conn: sqlite3.Connection) -> list[StreamSummary]:
            return [StreamSummary(s, v) for s, v in conn.execute(sql, params)]

        return await self._read(query)

    async def read_all(
        self,
        *,
        after: int = 0,
        limit: int | None = None,
        stream_prefix: str | None = None,
        stream_pattern: str | None = None,
        event_types: Collection[str] | None = None,
    ) -> list[RecordedEvent]:
        self._check_open()
        after, limit = check_log_read(after, limit)
        log_filter = LogFilter.create(stream_prefix, stream_pattern, event_types)
        return await self._read(lambda conn: _ops.read_log(conn, after, limit, log_filter))

    # -- lookup by event id ------------------------------------------------------------

    async def events_by_id(self, event_ids: Iterable[uuid.UUID]) -> list[RecordedEvent]:
        self._check_open()
        ids = [str(event_id) for event_id in check_event_ids(event_ids)]  # stored as text
        if not ids:
            return []
        return await self._read(lambda conn: _ops.events_by_id(conn, ids))

    # -- snapshots ---------------------------------------------------------------------

    async def save_snapshot(self, snapshot: Snapshot) -> bool:
        self._check_open()
        check_snapshot_key(snapshot.key)
        return await self._write(lambda conn: _ops.save_snapshot(conn, snapshot))

    async def load_snapshot(self, key: str) -> Snapshot | None:
        self._check_open()
        check_snapshot_key(key)
        return await self._read(lambda conn: _ops.load_snapshot(conn, key))

    # -- checkpoints -------------------------------------------------------------------

    async def save_checkpoint(
        self, name: str, position: int, *, fence: Fence | None = None
    ) -> None:
        self._check_open()
        check_checkpoint_name(name)
        check_checkpoint_position(position)
        checked = check_fence(fence)
        if checked is None:
            await self._write(lambda conn: _ops.save_checkpoint(conn, name, position))
        else:
            await self._write(
                lambda conn: _ops.save_fenced_checkpoint(conn, name, position, checked)
            )

    @contextlib.asynccontextmanager
    async def checkpoint_transaction(
        self, name: str, position: int, *, fence: Fence | None = None
    ) -> AsyncIterator[ProjectionTransaction]:
        """See :class:`~eventcore.store.TransactionalCheckpointStore`. The
        transaction runs on the writer thread and holds the file's write lock from
        its first statement to its end: keep the block short."""
        self._check_open()
        check_checkpoint_name(name)
        check_checkpoint_position(position)
        check_fence(fence)
        if not self._started:
            await self._start()
        session = WriterSession(self._write, name, position, fence, self._translated)
        try:
            yield session
        except BaseException:
            await session.rollback()
            raise
        await session.commit()

    async def load_checkpoint(self, name: str) -> int | None:
        self._check_open()
        check_checkpoint_name(name)
        return await self._read(lambda conn: _ops.load_checkpoint(conn, name))

    async def delete_checkpoint(self, name: str) -> None:
        self._check_open()
        check_checkpoint_name(name)
        await self._write(lambda conn: _ops.delete_checkpoint(conn, name))

    async def checkpoint_names(self) -> list[str]:
        self._check_open()
        return await self._read(_ops.checkpoint_names)

    # -- leases ------------------------------------------------------------------------

    async def acquire_lease(self, name: str, holder: str, ttl: float) -> bool:
        return await self.acquire_fenced_lease(name, holder, ttl) is not None

    async def acquire_fenced_lease(self, name: str, holder: str, ttl: float) -> int | None:
        self._check_open()
        check_lease_args(name, holder, ttl)
        return await self._write(lambda conn: _ops.acquire_lease(conn, name, holder, ttl))

    async def release_lease(self, name: str, holder: str) -> None:
        self._check_open()
        check_lease_args(name, holder)
        await self._write(lambda conn: _ops.release_lease(conn, name, holder))

    async def lease_holder(self, name: str) -> str | None:
        self._check_open()
        check_lease_args(name, "-")
        return await self._read(lambda conn: _ops.lease_holder(conn, name))

    # -- dead letters ------------------------------------------------------------------

    async def record_dead_letter(self, letter: DeadLetter) -> None:
        self._check_open()
        check_dead_letter(letter)
        await self._write(lambda conn: _ops.record_dead_letter(conn, letter))

    async def dead_letters(self, projection: str) -> list[DeadLetter]:
        self._check_open()
        check_checkpoint_name(projection)
        return await self._read(lambda conn: _ops.dead_letters(conn, projection))

    async def clear_dead_letters(self, projection: str) -> None:
        self._check_open()
        check_checkpoint_name(projection)
        await self._write(lambda conn: _ops.clear_dead_letters(conn, projection))


# SQLite result codes that say nothing in a batch could have been written (the file
# is locked, unreadable or full), so retrying its appends one by one is pointless.
_STORE_WIDE_CODES: Final = (
    "SQLITE_AUTH",
    "SQLITE_BUSY",
    "SQLITE_CANTOPEN",
    "SQLITE_CORRUPT",
    "SQLITE_FULL",
    "SQLITE_IOERR",
    "SQLITE_LOCKED",
    "SQLITE_NOMEM",
    "SQLITE_NOTADB",
    "SQLITE_PERM",
    "SQLITE_PROTOCOL",
    "SQLITE_READONLY",
)


def _fails_every_append(exc: Exception) -> bool:
    """Whether a failed group commit failed for every append in it; any other
    failure (a value or rule the database refuses) is charged to one append."""
    cause = exc.__cause__ if isinstance(exc, EventCoreError) else exc
    if isinstance(cause, sqlite3.Error):
        return getattr(cause, "sqlite_errorname", "").startswith(_STORE_WIDE_CODES)
    return lost_connection(exc)


def _check_path(path: object) -> str:
    if not isinstance(path, str | os.PathLike):
        raise ValidationError(f"path must be a str or os.PathLike, got {path!r}")
    text = os.fspath(path)
    if not isinstance(text, str) or text in ("", ":memory:"):
        raise ValidationError(
            f"path must name a database file (several connections share it), got {path!r}"
        )
    return text
