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
from collections.abc import Iterable, Mapping
from typing import Any, ClassVar, Generic, TypeVar

from eventcore.errors import StateReuseRefused, ValidationError
from eventcore.types import StreamId

DEFAULT_MAX_STREAMS = 1000

S = TypeVar("S")
E = TypeVar("E")


class Command(ABC, Generic[S, E]):
    """Base class of commands over state ``S`` and events ``E``.

    ``apply`` and ``handle`` must be pure: a command may be run several times
    (each retry starts again from fresh state), and ``apply`` must return a new
    state rather than change the one it was given.

    Reused state (opt-in, ``reuses_state = True``): the state cache
    (:class:`~eventcore.cache.StateCache`) and snapshots hand a command the state
    folded by an *earlier command* — an instance of its class, or of a class with
    the same fold (the same ``initial_state``, ``apply`` and ``resolve_streams``)
    — over the same declared streams. That is only right if the command follows
    the rules of reused state: ``initial_state``, ``apply`` and ``resolve_streams``
    depend only on the events, never on the instance's fields (nor on what
    differs between classes sharing them); ``apply`` returns a new state;
    and the state does not depend on how events of different streams interleave.
    Nothing else can check this (the stream versions match either way, so a state
    folded with another instance's fields would let a wrong event be written), so
    a class declares it, and :func:`~eventcore.execute` refuses a cache or
    snapshots for a class that has not. Subclasses inherit the declaration. Test
    it with ``StateCache(verify=True)``, which folds afresh on every cache hit and
    raises :class:`~eventcore.errors.StateReuseMismatch` if the states differ.

    Snapshots (opt-in, needs ``reuses_state``): set ``snapshot_every`` to N > 0,
    ``snapshot_name`` to a stable name (like an event type name) and
    ``state_type`` to the state's class (a dataclass, msgspec Struct, or anything
    msgspec encodes). After a fold that replayed at least N events, the state is
    saved in the store, and the next fold starts from it, reading only the events
    after it. A snapshot that no longer decodes (the state class changed) is
    ignored; one that cannot be encoded or stored is skipped with a warning
    logged, never failing the command.

    Per-stream state (opt-in, needs ``reuses_state``): set ``state_per_stream =
    True`` and define :meth:`merge_states` when the state of several streams is
    each stream's state, folded alone, put together — balances of the accounts a
    transfer reads, say. The cache then keeps one entry per stream (shared by
    every command class with the same fold) instead of one per stream set. The
    rule: folding the streams one after another from ``initial_state`` equals
    ``merge_states`` of each stream folded alone from ``initial_state``, whatever
    the streams; ``StateCache(verify=True)`` checks it on every hit. Such a class
    cannot discover streams (``resolve_streams``), since what one stream names
    would depend on the others.

    Taking turns (opt-in, needs ``reuses_state``): set ``takes_turns = True`` when
    a command writes the streams it declares. Commands of such classes run with
    the same :class:`~eventcore.cache.StateCache` then take turns on their
    declared streams: one at a time per stream, in the order they arrived,
    instead of racing to a version conflict that only one of them can win. The
    next in line decides on the state the one before it left in the cache, with
    no read and no retry. Commands of other processes still race as usual (the
    version check settles it). Leave it off for a command that only reads a
    stream many commands share (a price list, say): every command declaring that
    stream would then wait for the one before it. A turn belongs to the task
    running the command: a command that task runs meanwhile on the same stream
    (from a store wrapper, say) goes without that turn, but one started in
    another task and awaited by the holder would wait for ever.

    ``max_streams`` bounds the streams one execution reads, declared and
    discovered (see :meth:`resolve_streams`).

    These class settings are checked once, when the class is defined.
    """

    reuses_state: ClassVar[bool] = False
    state_per_stream: ClassVar[bool] = False
    takes_turns: ClassVar[bool] = False
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

    def merge_states(self, parts: Mapping[StreamId, S]) -> S:
        """With ``state_per_stream``: the state folding ``parts``' streams one after
        another (in this order) gives, from each one's state folded alone. Must not
        change the parts. Classes without ``state_per_stream`` never call it."""
        raise NotImplementedError(
            f"{type(self).__qualname__} sets state_per_stream but defines no merge_states"
        )

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
    name = cls.__qualname__
    limit = cls.max_streams
    if type(limit) is not int or limit < 1:
        raise ValidationError(f"{name}.max_streams must be an int >= 1, got {limit!r}")
    if not isinstance(cls.reuses_state, bool):
        raise ValidationError(
            f"{name}.reuses_state must be True or False, got {cls.reuses_state!r}"
        )
    _check_per_stream(cls)
    if not isinstance(cls.takes_turns, bool):
        raise ValidationError(f"{name}.takes_turns must be True or False, got {cls.takes_turns!r}")
    if cls.takes_turns and not cls.reuses_state:
        # Turns are held in the StateCache, which such a class cannot be run with.
        raise state_reuse_refused(cls, "taking turns (takes_turns)")
    every = cls.snapshot_every
    if type(every) is not int or every < 0:
        raise ValidationError(f"{name}.snapshot_every must be an int >= 0, got {every!r}")
    if not every:
        return
    if not isinstance(cls.snapshot_name, str) or not cls.snapshot_name:
        raise ValidationError(
            f"{name} sets snapshot_every but no snapshot_name (a stable name for its "
            f"snapshots), got {cls.snapshot_name!r}"
        )
    if not isinstance(cls.state_type, type):
        raise ValidationError(
            f"{name}.state_type must be the state's class, got {cls.state_type!r}"
        )
    if not cls.reuses_state:
        raise state_reuse_refused(cls, "snapshots (snapshot_every)")


def _check_per_stream(cls: type[Command[Any, Any]]) -> None:
    name = cls.__qualname__
    if not isinstance(cls.state_per_stream, bool):
        raise ValidationError(
            f"{name}.state_per_stream must be True or False, got {cls.state_per_stream!r}"
        )
    if not cls.state_per_stream:
        return
    if not cls.reuses_state:
        raise state_reuse_refused(cls, "per-stream state (state_per_stream)")
    if cls.merge_states is Command.merge_states:
        raise ValidationError(
            f"{name} sets state_per_stream but defines no merge_states: define how the "
            "states of single streams, each folded alone, make the state of several"
        )
    if cls.resolve_streams is not Command.resolve_streams:
        raise ValidationError(
            f"{name} sets state_per_stream and overrides resolve_streams: a per-stream "
            "state cannot discover streams (what one stream names would depend on the "
            "others); drop state_per_stream or the resolver"
        )


def state_reuse_refused(cls: type[Command[Any, Any]], used_with: str) -> StateReuseRefused:
    """The error for using ``cls`` with reused state it has not opted in to."""
    name = cls.__qualname__
    return StateReuseRefused(
        f"{name} has not opted in to reused state, so it cannot be used with {used_with}. "
        f"A reused state was folded by another command of {name} (or of a class sharing "
        "its initial_state, apply and resolve_streams) with the same streams, "
        "so initial_state, apply and resolve_streams must not read the command's fields, "
        "apply must return a new state rather than change the one it is given, and the "
        "state must not depend on how events of different streams interleave. If "
        f"{name} follows these rules, say so in the class: "
        "`reuses_state: ClassVar[bool] = True` (and check it in tests with "
        "StateCache(verify=True))."
    )
