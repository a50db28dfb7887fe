"""How far a projection is, from any process: :func:`projection_status`."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from eventcore.errors import ValidationError
from eventcore.store import ProjectionStore, check_checkpoint_name


class ProjectionState(enum.StrEnum):
    """Where a runner is. ``standby``: another holder has the lease; ``catching_up``:
    reading the log behind its head; ``live``: caught up, following new events;
    ``failed``: stopped on an error (see ``last_error``); ``stopped``: not running."""

    STANDBY = "standby"
    CATCHING_UP = "catching_up"
    LIVE = "live"
    FAILED = "failed"
    STOPPED = "stopped"


@dataclass(frozen=True, slots=True)
class ProjectionStatus:
    """A projection at one moment.

    ``position``: every event up to it is handled (or passed over by the filter);
    ``head``: the log's last position, so ``lag`` events remain; ``lag_seconds``:
    how much older the event at ``position`` was recorded than the newest one (0
    when caught up). ``state`` is None when asked from a process that does not run
    the projection (see ``lease_holder`` for who does). ``dead_letters``: how many
    events it skipped.
    """

    name: str
    state: ProjectionState | None
    position: int
    head: int
    lag_seconds: float
    last_error: str | None
    lease_holder: str | None
    dead_letters: int

    @property
    def lag(self) -> int:
        return max(self.head - self.position, 0)


async def projection_status(
    store: ProjectionStore,
    name: str,
    *,
    state: ProjectionState | None = None,
    position: int | None = None,
    last_error: str | None = None,
) -> ProjectionStatus:
    """The status of projection ``name`` as ``store`` records it (a runner passes
    what it knows better: its state, its position, its last error).

    Raises :class:`~eventcore.errors.ValidationError` for a name that never ran
    here: no checkpoint, lease or dead letter under it."""
    check_checkpoint_name(name)
    checkpoint = await store.load_checkpoint(name)
    holder = await store.lease_holder(name)
    letters = len(await store.dead_letters(name))
    never_ran = checkpoint is None and holder is None and not letters
    if position is None and state is None and never_ran:
        raise ValidationError(
            f"no projection named {name!r} has run on this store (no checkpoint, lease "
            "or dead letter under that name); check the name"
        )
    if position is None:
        position = checkpoint or 0
    head = await store.head_position()
    return ProjectionStatus(
        name,
        state,
        position,
        head,
        await _lag_seconds(store, position, head),
        last_error,
        holder,
        letters,
    )


async def _lag_seconds(store: ProjectionStore, position: int, head: int) -> float:
    if position >= head:
        return 0.0
    newest = await store.read_all(after=head - 1, limit=1)
    handled = await store.read_all(after=max(position - 1, 0), limit=1)
    if not newest or not handled:
        return 0.0
    return max((newest[0].recorded_at - handled[0].recorded_at).total_seconds(), 0.0)
