"""Reading from a hot standby: which pool each read uses, and waking followers.

A store configured with ``read_dsn`` keeps a second pool, to a streaming replica.
:class:`ReadPools` says where each kind of read goes: the global log always to the
replica; a command's stream reads there only when ``command_reads_on_replica``
(the append, on the primary, checks every version it read, so a stale read costs
a conflict and a retry, never a wrong result).

A standby delivers no NOTIFY (notifications are not written to the WAL), so a
follower reading from it cannot be woken by it. :class:`ReplayWatch` keeps the
wake-up on the primary: the store's listener hears "position N committed" there,
then the watch polls the replica's log head, briefly and with a growing interval,
until the replica has replayed past the follower's position (see
docs/adr/0009-replica-reads-wake-up.md for why).

Replay keeps the log's guarantee: positions are handed out under a lock held to
commit, so commit records reach the WAL in position order, and a standby applies
them in WAL order. Once a replica shows position N, it shows every lower one.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Final

import asyncpg

from eventcore.backends.postgres._listener import AppendListener
from eventcore.errors import StoreError

# Replication on a LAN usually replays a commit within a millisecond or two: the
# first polls come quickly, later ones back off so that a lagging replica is not
# queried every millisecond. Growing by half (not doubling) keeps the overshoot
# past the moment of replay under half the lag.
FIRST_POLL_DELAY: Final = 0.001
POLL_DELAY_GROWTH: Final = 1.5
MAX_POLL_DELAY: Final = 0.02


@dataclass(frozen=True, slots=True)
class ReadPools:
    """The pool for reads of the global log, and the pool for a command's reads."""

    log: asyncpg.Pool
    command: asyncpg.Pool
    replica: asyncpg.Pool | None

    @classmethod
    def route(
        cls, primary: asyncpg.Pool, replica: asyncpg.Pool | None, *, command_reads: bool
    ) -> ReadPools:
        if replica is None:
            return cls(primary, primary, None)
        return cls(replica, replica if command_reads else primary, replica)


class ReplayWatch:
    """Knows how far a replica has replayed the log, by asking it (its log head).

    Concurrent waiters share one query at a time, so many followers waiting on one
    store cost one poll per interval, not one each.
    """

    def __init__(self, read_head: Callable[[], Awaitable[int]]) -> None:
        self._read_head = read_head
        self.replayed = 0
        self._poll: asyncio.Future[int] | None = None

    async def _replayed_now(self) -> int:
        if self._poll is None:
            self._poll = asyncio.ensure_future(self._read_head())
            self._poll.add_done_callback(self._poll_done)
        # Shielded: one waiter cancelled (a follower stopping) must not cancel
        # the query the others are waiting on.
        self.replayed = max(self.replayed, await asyncio.shield(self._poll))
        return self.replayed

    def _poll_done(self, poll: asyncio.Future[int]) -> None:
        self._poll = None
        if not poll.cancelled():
            poll.exception()  # retrieved: a failure nobody awaited is not logged

    async def wait_past(self, position: int, max_wait: float) -> bool:
        """Poll until the replica has replayed past ``position`` or ``max_wait``
        seconds pass; whether it has. A replica that cannot be asked ends the wait:
        the read that follows reports the trouble."""
        deadline = time.monotonic() + max_wait
        delay = FIRST_POLL_DELAY
        while True:
            try:
                if self.replayed > position or await self._replayed_now() > position:
                    return True
            except StoreError:
                return False
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            await asyncio.sleep(min(delay, left))
            delay = min(delay * POLL_DELAY_GROWTH, MAX_POLL_DELAY)


async def wait_on_replica(
    listener: AppendListener, replay: ReplayWatch, after: int, max_wait: float
) -> None:
    """Hear of a commit past ``after`` on the primary (a standby delivers no
    NOTIFY), then wait for the replica to have replayed past ``after``; at most
    ``max_wait`` seconds in all. When the primary cannot be heard, the listener
    sleeps ``max_wait`` and the caller reads the replica anyway: polling."""
    deadline = time.monotonic() + max_wait
    await listener.wait_past(after, max_wait)
    if listener.latest_position > after:
        await replay.wait_past(after, max(deadline - time.monotonic(), 0.0))
