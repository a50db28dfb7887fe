"""What a command is: the streams it reads, how it folds them, what it decides.

A command is pure logic. :func:`eventcore.execute` does the I/O: it reads the
streams the command names, folds their events with :meth:`Command.apply`, asks
:meth:`Command.handle` for new events, and appends them atomically with a version
check on every stream it read::

    @dataclass(frozen=True)
    class Transfer(Command[Balances, AccountEvent]):
        source: str
        target: str
        amount: int

        def streams(self) -> list[str]:
            return [self.source, self.target]

        def initial_state(self) -> Balances:
            return Balances()

        def apply(self, state: Balances, stream_id: StreamId, event: AccountEvent) -> Balances:
            return state.with_event(stream_id, event)

        def handle(self, state: Balances) -> list[tuple[str, AccountEvent]]:
            if state.balance(self.source) < self.amount:
                raise BusinessRuleViolation(f"{self.source} cannot cover {self.amount}")
            return [
                (self.source, MoneyWithdrawn(self.amount)),
                (self.target, MoneyDeposited(self.amount)),
            ]
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable
from typing import Any, ClassVar, Generic, TypeVar

from eventcore.errors import ValidationError
from eventcore.types import StreamId

DEFAULT_MAX_STREAMS = 1000

S = TypeVar("S")
E = TypeVar("E")


class Command(ABC, Generic[S, E]):
    """Base class of commands over state ``S`` and events ``E``.

    ``apply`` and ``handle`` must be pure: a command may be run several times
    (each retry starts again from fresh state), and ``apply`` must return a new
    state rather than change the one it was given.

    Snapshots (opt-in): set ``snapshot_every`` to N > 0, ``snapshot_name`` to a
    stable name (like an event type name) and ``state_type`` to the state's class
    (a dataclass, msgspec Struct, or anything msgspec encodes). After a fold that
    replayed at least N events, the state is saved in the store, and the next fold
    starts from it, reading only the events after it. A snapshot that no longer
    decodes (the state class changed) is ignored.

    Snapshots and the state cache (:class:`~eventcore.cache.StateCache`) reuse a
    folded state across executions, keyed by the command's class and declared
    streams. So, for a command used with either: ``initial_state``, ``apply`` and
    ``resolve_streams`` must depend only on the class, never on the instance's
    fields (two instances with the same streams share the state), and the state
    must not depend on how events of different streams interleave.
    """

    snapshot_every: ClassVar[int] = 0
    snapshot_name: ClassVar[str | None] = None
    state_type: ClassVar[type[Any] | None] = None
    max_streams: ClassVar[int] = DEFAULT_MAX_STREAMS

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        _check_class_settings(cls)

    @abstractmethod
    def streams(self) -> Iterable[str]:
        """The streams this command reads, and may write to, in reading order."""

    @abstractmethod
    def initial_state(self) -> S:
        """The state before any event is applied."""

    @abstractmethod
    def apply(self, state: S, stream_id: StreamId, event: E) -> S:
        """Fold one event, read from ``stream_id``, into the state."""

    @abstractmethod
    def handle(self, state: S) -> Iterable[tuple[str, E]]:
        """Decide: return ``(stream id, event)`` pairs to append, or raise
        :class:`~eventcore.errors.BusinessRuleViolation`. Every stream named must
        have been read."""

    def resolve_streams(self, state: S) -> Iterable[str]:
        """Streams discovered at run time, asked after each stream is folded.

        Streams returned here are read (once per attempt) and become part of the
        consistency boundary, like declared ones. The default discovers none.
        One execution reads at most ``max_streams`` streams (declared and
        discovered; 1,000 unless the class sets it): past that it raises
        :class:`~eventcore.errors.TooManyStreams`, so a resolver that keeps naming
        new streams fails instead of running forever.
        """
        return ()


def _check_class_settings(cls: type[Command[Any, Any]]) -> None:
    """Refuse bad class-level settings once, when the class is defined, rather than
    on every execution."""
    limit = cls.max_streams
    if type(limit) is not int or limit < 1:
        raise ValidationError(f"{cls.__qualname__}.max_streams must be an int >= 1, got {limit!r}")
