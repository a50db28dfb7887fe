"""Wake-ups for tailing readers over LISTEN/NOTIFY, with polling as the fallback.

Every append that writes events ends with ``pg_notify(channel, last_position)``,
delivered when (and only if) it commits. One dedicated connection per store
listens; waiting readers are woken as soon as a notification says the log has
grown past what they have. If that connection is lost, waiters fall back to
their poll interval until it is re-established.

Through a multi-host DSN, the listener also lets go of a connection on a host the
pool has left: a primary that hangs (its machine lost, a network partition)
leaves the connection open and silent, and waiters would poll forever instead of
listening on the new primary.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg

from eventcore.backends.postgres._errors import DRIVER_ERRORS

# Whatever connecting or setting up LISTEN meets (the server restarting, refusing,
# timing out, the schema dropped), the waiter polls rather than see a driver
# exception; the reads that follow each wait report the trouble, mapped.


class AppendListener:
    def __init__(
        self,
        connect: Callable[[], Awaitable[asyncpg.Connection]],
        channel: str,
        head_query: str | None = None,
        current: Callable[[asyncpg.Connection], bool] | None = None,
    ):
        self._connect = connect
        self._channel = channel
        # Whether a connection is still on the host the pool uses (multi-host DSNs).
        self._current = current
        # Reads the log's head position. Run right after LISTEN, it covers every
        # append committed while nobody listened (their notifications are lost);
        # later appends notify. Without it, a waiter whose log is already past
        # ``after`` sleeps out its max_wait.
        self._head_query = head_query
        self._conn: asyncpg.Connection | None = None
        self._connecting: asyncio.Lock = asyncio.Lock()
        self._changed = asyncio.Event()
        self.latest_position = 0

    def listening(self) -> bool:
        return self._conn is not None and not self._conn.is_closed()

    def drop_if_left_behind(self) -> None:
        """Let go of the connection if the pool has moved to another host."""
        conn = self._conn
        if conn is None or self._current is None or self._current(conn):
            return
        self._conn = None
        conn.terminate()  # its host may be hung: a polite close could wait forever
        self._changed.set()  # waiters on it would hear nothing more: re-check now
        self._changed = asyncio.Event()

    async def ensure_listening(self) -> bool:
        """Start listening if not already; False (and polling) if it cannot."""
        self.drop_if_left_behind()
        if self.listening():
            return True
        async with self._connecting:
            if self.listening():
                return True
            try:
                conn = await self._connect()
            except DRIVER_ERRORS:
                return False
            try:
                await conn.add_listener(self._channel, self._on_notify)
                if self._head_query is not None:
                    head = int(await conn.fetchval(self._head_query))
                    self.latest_position = max(self.latest_position, head)
            except DRIVER_ERRORS:
                conn.terminate()  # in doubt; a polite close could wait on a dead server
                return False
            except BaseException:  # cancelled while setting up: do not leak it
                conn.terminate()
                raise
            conn.add_termination_listener(self._on_terminated)
            self._conn = conn
            return True

    def _on_notify(self, _conn: Any, _pid: int, _channel: str, payload: object) -> None:
        with contextlib.suppress(ValueError):
            self.latest_position = max(self.latest_position, int(str(payload)))
        self._changed.set()
        self._changed = asyncio.Event()

    def _on_terminated(self, conn: object) -> None:
        if conn is not self._conn:
            return  # one let go of already, and maybe replaced
        self._conn = None
        self._changed.set()  # let waiters re-check (and poll) at once
        self._changed = asyncio.Event()

    async def wait_past(self, position: int, max_wait: float) -> None:
        """Return once a notification reports the log past ``position``, or after
        ``max_wait`` seconds (the caller then reads the log anyway)."""
        if not await self.ensure_listening():
            await asyncio.sleep(max_wait)
            return
        if self.latest_position > position:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._changed.wait(), max_wait)

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None and not conn.is_closed():
            try:
                await conn.close(timeout=2)
            except DRIVER_ERRORS:
                conn.terminate()
