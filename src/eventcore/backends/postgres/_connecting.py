"""How a pool connects, and what the hosts answered when connecting failed.

asyncpg's pool connects when it hands out a connection it has not got (or lost):
a failed connect is raised by ``acquire()``, and a connect that is still waiting
on a host when the acquire's timeout runs out ends as that timeout. From the
outside both look like "no connection free", which during an outage (a failover,
a host down) blames the pool for what the network did. :class:`Connector`
connects for a pool, through a :class:`~eventcore.backends.postgres._hosts.HostOrder`
or to its one host, and keeps what the hosts answered the last time connecting
failed, so that the store can say so.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import asyncpg
from asyncpg import exceptions as pg

from eventcore.backends.postgres._errors import describe_target
from eventcore.backends.postgres._hosts import HostOrder


@dataclass(frozen=True, slots=True)
class ConnectFailure:
    """Each host tried, in order, with what it answered."""

    answers: tuple[tuple[str, str], ...]
    # A host answered but was not what target_session_attrs asks for.
    unmatched: bool = False

    def __str__(self) -> str:
        text = "; ".join(f"{host} {answer}" for host, answer in self.answers)
        if self.unmatched:
            text += (
                ". No host of the DSN accepts writes now (a failover under way?): retry "
                "shortly, or check target_session_attrs"
            )
        return text


def describe_answer(exc: BaseException, timeout: object) -> str:
    """What a host's answer to a connection attempt means, for a message."""
    if isinstance(exc, TimeoutError):
        return f"did not answer within {timeout} s (connect_timeout)"
    if isinstance(exc, pg.TargetServerAttributeNotMatched):
        return "answered, but does not match target_session_attrs (a standby?)"
    if isinstance(exc, OSError | asyncpg.PostgresError | pg.PostgresConnectionError):
        return f"answered {type(exc).__name__}: {exc}"
    # Anything else (a DSN the driver could not read) may quote the DSN: its
    # class alone.
    return f"failed with {type(exc).__name__}"


class Connector:
    """Connects for one pool, and remembers the hosts' answers to the last
    attempt that failed; a success forgets them."""

    def __init__(self, dsn: str, hosts: HostOrder | None) -> None:
        self._dsn = dsn
        self._hosts = hosts
        # Counted, so that a caller can ask about the failures during its wait.
        self.failures = 0
        self.successes = 0
        self.attempts_in_flight = 0
        self.last_failure: ConnectFailure | None = None

    async def connect(self, dsn: str | None = None, **kwargs: Any) -> asyncpg.Connection:
        """asyncpg's ``connect``, as the pool calls it."""
        answers: list[tuple[str, BaseException]] = []
        self.attempts_in_flight += 1
        try:
            if self._hosts is not None:
                conn: asyncpg.Connection = await self._hosts.connect(answers=answers, **kwargs)
            else:
                try:
                    conn = await asyncpg.connect(self._dsn, **kwargs)
                except Exception as exc:
                    answers.append((describe_target(self._dsn), exc))
                    raise
        except Exception as exc:
            if not answers:  # not a host's answer: the DSN, say, could not be read
                answers.append((describe_target(self._dsn), exc))
            timeout = kwargs.get("timeout")
            self.last_failure = ConnectFailure(
                tuple((host, describe_answer(error, timeout)) for host, error in answers),
                unmatched=any(
                    isinstance(error, pg.TargetServerAttributeNotMatched) for _, error in answers
                ),
            )
            self.failures += 1
            raise
        finally:
            self.attempts_in_flight -= 1
        self.last_failure = None
        self.successes += 1
        return conn

    def trouble_since(self, failures: int, successes: int) -> str | None:
        """Why connecting has not worked since the counts were ``failures`` and
        ``successes`` (read before a wait); ``None`` if it has, or was not tried."""
        if self.successes != successes:
            return None
        if self.failures != failures and self.last_failure is not None:
            return f"cannot connect to PostgreSQL: {self.last_failure}"
        if self.attempts_in_flight:
            return (
                f"cannot connect to PostgreSQL at {describe_target(self._dsn)}: "
                "a connection attempt is still waiting for an answer"
            )
        return None
