"""What a user writes: a :class:`Projection`, and how it reacts to failure.

A projection is a named reader of the global log that keeps a read model
wherever it likes (a dict, a table, a search index). The runner hands it every
matching :class:`~eventcore.types.RecordedEvent`, in log order; the projection
decodes what it needs with its codec (``codec.decode(event)``), so events it
ignores cost no decoding, and a payload that cannot be decoded is a failure of
that projection, handled by its :class:`FailurePolicy`, not of the runner.
"""

from __future__ import annotations

import abc
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Literal

from eventcore._text import check_storable_text
from eventcore.errors import ValidationError
from eventcore.store import LogFilter
from eventcore.types import RecordedEvent

MAX_PROJECTION_NAME = 200  # it names a checkpoint and a lease: keep it a label


@dataclass(frozen=True, slots=True)
class FailurePolicy:
    """What a runner does when ``handle`` raises.

    ``action="retry"`` (the default): retry the event up to ``max_retries`` times,
    waiting ``base_delay * 2**n`` seconds (at most ``max_delay``) before retry
    ``n``; then do ``then`` (``"stop"`` or ``"skip"``). ``"skip"``: record the event
    and the error as a dead letter and go on. ``"stop"``: the runner stops in state
    ``failed`` with the error, its checkpoint before the event.
    """

    action: Literal["retry", "skip", "stop"] = "retry"
    max_retries: int = 5
    base_delay: float = 0.1
    max_delay: float = 30.0
    then: Literal["skip", "stop"] = "stop"

    def __post_init__(self) -> None:
        if self.action not in ("retry", "skip", "stop"):
            raise ValidationError(
                f"failure action must be 'retry', 'skip' or 'stop', got {self.action!r}"
            )
        if self.then not in ("skip", "stop"):
            raise ValidationError(f"then must be 'skip' or 'stop', got {self.then!r}")
        if type(self.max_retries) is not int or self.max_retries < 0:
            raise ValidationError(f"max_retries must be an int >= 0, got {self.max_retries!r}")
        for name, value in (("base_delay", self.base_delay), ("max_delay", self.max_delay)):
            if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0:
                raise ValidationError(f"{name} must be a number of seconds >= 0, got {value!r}")

    @classmethod
    def retry(
        cls,
        max_retries: int = 5,
        *,
        base_delay: float = 0.1,
        max_delay: float = 30.0,
        then: Literal["skip", "stop"] = "stop",
    ) -> FailurePolicy:
        return cls("retry", max_retries, base_delay, max_delay, then)

    @classmethod
    def skip(cls) -> FailurePolicy:
        return cls("skip")

    @classmethod
    def stop(cls) -> FailurePolicy:
        return cls("stop")

    def delay(self, retry: int) -> float:
        """Seconds to wait before retry number ``retry`` (0-based)."""
        return float(min(self.base_delay * 2**retry, self.max_delay))

    def retries_left(self, retries: int) -> bool:
        return self.action == "retry" and retries < self.max_retries

    @property
    def gives_up_by(self) -> Literal["skip", "stop"]:
        """What happens once retrying is over (or was never the action)."""
        return self.then if self.action == "retry" else self.action


class Projection(abc.ABC):
    """Subclass it: give it a ``name``, say what it reads, and handle events.

    ::

        class Balances(Projection):
            name = "balances"
            stream_prefix = "account-"

            def __init__(self) -> None:
                self.balances: dict[str, int] = {}

            async def handle(self, event: RecordedEvent) -> None:
                deposited = bank_codec.decode(event)
                self.balances[event.stream_id] = ...

            async def reset(self) -> None:
                self.balances.clear()

    ``name`` is stable: it keys the checkpoint, the lease and the dead letters, so
    renaming a projection starts it from the beginning. ``stream_prefix``,
    ``stream_pattern`` and ``event_types`` filter the log exactly as
    :meth:`~eventcore.store.EventReader.read_all` does. ``failure_policy`` says
    what to do when ``handle`` raises (see :class:`FailurePolicy`).

    Delivery is at least once: after a crash or a takeover, the events after the
    last checkpoint are handled again. ``handle`` must therefore be idempotent
    (an upsert keyed by the event's position or id, not an increment).
    """

    name: str
    stream_prefix: str | None = None
    stream_pattern: str | None = None
    event_types: Collection[str] | None = None
    failure_policy: FailurePolicy = FailurePolicy()

    @abc.abstractmethod
    async def handle(self, event: RecordedEvent) -> None:
        """Apply one event to the read model."""

    async def handle_batch(self, events: Sequence[RecordedEvent]) -> None:
        """Apply a page of events (override to write them in one transaction). If it
        raises, the runner handles the page again one event at a time through
        :meth:`handle`, so the failure policy applies to the event that fails."""
        for event in events:
            await self.handle(event)

    @abc.abstractmethod
    async def reset(self) -> None:
        """Empty the read model, before a rebuild replays the log from the start."""


def check_reader_name(reader: object, keys: str) -> str:
    """The ``name`` of a projection or process manager, validated: it keys ``keys``."""
    kind = type(reader).__qualname__
    name = getattr(reader, "name", None)
    if not isinstance(name, str) or not name.strip() or len(name) > MAX_PROJECTION_NAME:
        raise ValidationError(
            f"{kind}.name must be a non-empty str of at most {MAX_PROJECTION_NAME} "
            f"characters (it keys {keys}), got {name!r}"
        )
    check_storable_text(name, f"{kind}.name")
    return name


def check_projection(projection: object) -> LogFilter:
    """Validate a projection; return the log filter it asks for."""
    if not isinstance(projection, Projection):
        raise ValidationError(
            f"a projection runner takes a Projection (subclass eventcore.projection."
            f"Projection), got {projection!r}"
        )
    kind = type(projection).__qualname__
    name = check_reader_name(projection, "the checkpoint and the lease")
    if not isinstance(projection.failure_policy, FailurePolicy):
        raise ValidationError(
            f"{kind}.failure_policy must be a FailurePolicy, got {projection.failure_policy!r}"
        )
    try:
        return LogFilter.create(
            projection.stream_prefix, projection.stream_pattern, projection.event_types
        )
    except ValidationError as exc:
        raise ValidationError(f"projection {name!r} has a bad filter: {exc}") from exc


def has_own_batch_handler(projection: Projection) -> bool:
    return type(projection).handle_batch is not Projection.handle_batch
