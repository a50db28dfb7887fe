"""A projection's transaction on the SQLite store's writer thread.

The store has one writing connection, owned by its writer thread; a transaction
that a projection's async handler drives statement by statement must therefore run
*on* that thread, as one job that serves the statements the event loop sends it
(a queue in, a future per statement out) until it is told to commit or roll back.
Other writes of this process queue behind the job, as they would behind an append.

The job starts with the first statement (or the commit), not when the ``async
with`` block opens: ``BEGIN IMMEDIATE`` takes the file's write lock, and a
transaction should hold it only while it works, not while its handler awaits
something else. Under the write lock the lease cannot change hands, so the fence
checked just before ``COMMIT`` still holds at ``COMMIT``.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import sqlite3
from collections.abc import Awaitable, Callable
from concurrent.futures import Future
from typing import Any, Final

from eventcore.backends.sqlite import _ops
from eventcore.errors import StoreUnavailable, ValidationError
from eventcore.store import Fence

Rows = list[tuple[Any, ...]]
# What the event loop asks of the job: a statement (sql, params), or the end.
_COMMIT: Final = "commit"
_ROLLBACK: Final = "rollback"
Request = tuple[str | tuple[str, tuple[object, ...]], "Future[Rows]"]
# A job left waiting this long for its next request (its event loop is gone) rolls
# back, so the writer thread and the file's write lock are not held forever.
IDLE_LIMIT: Final = 600.0


class WriterSession:
    """Implements :class:`~eventcore.store.ProjectionTransaction` for SQLite: ``?``
    parameters, rows as tuples."""

    def __init__(
        self,
        run_on_writer: Callable[[Callable[[sqlite3.Connection], None]], Awaitable[None]],
        name: str,
        position: int,
        fence: Fence | None,
        translated: Callable[[], contextlib.AbstractContextManager[None]],
    ) -> None:
        self._run_on_writer = run_on_writer
        self._translated = translated
        self._name = name
        self._position = position
        self._fence = fence
        self._requests: queue.SimpleQueue[Request] = queue.SimpleQueue()
        self._job: asyncio.Future[None] | None = None
        self._finished = False

    async def execute(self, sql: str, *params: object) -> None:
        await self._ask((_check_sql(sql), params))

    async def fetch(self, sql: str, *params: object) -> Rows:
        return await self._ask((_check_sql(sql), params))

    async def commit(self) -> None:
        await self._ask(_COMMIT)

    async def rollback(self) -> None:
        if self._job is None or self._finished:
            self._finished = True
            return
        await self._ask(_ROLLBACK)

    async def _ask(self, request: str | tuple[str, tuple[object, ...]]) -> Rows:
        if self._finished:
            raise StoreUnavailable(
                f"the transaction of projection {self._name!r} is over (committed or rolled "
                "back); use the transaction only inside its handler"
            )
        if request in (_COMMIT, _ROLLBACK):
            self._finished = True
        answer: Future[Rows] = Future()
        self._requests.put((request, answer))
        if self._job is None:
            self._job = asyncio.ensure_future(self._run_on_writer(self._serve))
        waiting = asyncio.wrap_future(answer)
        either: set[asyncio.Future[Any]] = {waiting, self._job}
        await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
        if not waiting.done():  # the job ended first: BEGIN failed, or it gave up
            waiting.cancel()
            self._finished = True
            self._job.result()
            raise StoreUnavailable(
                f"the transaction of projection {self._name!r} was rolled back after "
                f"{IDLE_LIMIT} s without a statement"
            )
        return waiting.result()

    def _serve(self, conn: sqlite3.Connection) -> None:
        """The job, on the writer thread: one transaction, statement by statement."""
        conn.execute("BEGIN IMMEDIATE")
        try:
            while True:
                try:
                    request, answer = self._requests.get(timeout=IDLE_LIMIT)
                except queue.Empty:
                    return
                try:
                    with self._translated():
                        rows = self._step(conn, request)
                except BaseException as exc:
                    answer.set_exception(exc)
                    if request == _COMMIT:
                        return
                    continue
                answer.set_result(rows)
                if request in (_COMMIT, _ROLLBACK):
                    return
        finally:
            if conn.in_transaction:
                conn.execute("ROLLBACK")

    def _step(
        self, conn: sqlite3.Connection, request: str | tuple[str, tuple[object, ...]]
    ) -> Rows:
        if request == _ROLLBACK:
            conn.execute("ROLLBACK")
            return []
        if request == _COMMIT:
            if self._fence is not None:
                _ops.check_fence(conn, self._fence)
            _ops.save_checkpoint(conn, self._name, self._position)
            conn.execute("COMMIT")
            return []
        assert isinstance(request, tuple)
        sql, params = request
        return conn.execute(sql, params).fetchall()


def _check_sql(sql: object) -> str:
    if not isinstance(sql, str) or not sql.strip():
        raise ValidationError(f"sql must be a non-empty str, got {sql!r}")
    return sql
