"""Process managers: commands driven by events, each with an exactly-once effect.

A :class:`ProcessManager` reads the global log like a projection and answers
events with commands. It runs on the projection runner, so events are delivered
at least once: after a crash, the events after the last checkpoint come again.
What makes the *effect* exactly-once is the command id: the ``i``-th command
issued for the event with id ``E`` runs under the id
``uuid5(PROCESS_COMMAND_NAMESPACE, f"{name}:{E}:{i}")``, the same on every
delivery, so the store refuses its events a second time and the executor answers
the replay with the original outcome (``already_applied``). See
``docs/adr/0007-process-managers.md`` for why this suffices, and
``docs/process-managers.md`` for an example.
"""

from __future__ import annotations

import abc
import inspect
import uuid
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from eventcore.codec import Codec
from eventcore.command import Command
from eventcore.errors import BusinessRuleViolation, ValidationError
from eventcore.execute import execute
from eventcore.observe import Observer
from eventcore.projection._projection import FailurePolicy, Projection, check_reader_name
from eventcore.projection._runner import ProjectionRunner, RunnerOptions
from eventcore.store import EventReader, EventStore
from eventcore.types import RecordedEvent, StreamId

if TYPE_CHECKING:  # eventcore.application imports this package: no cycle at run time
    from eventcore.application import Application

PROCESS_COMMAND_NAMESPACE: Final = uuid.UUID("c0eb5097-5b74-5536-964c-df6c748ddda3")
"""uuid5(NAMESPACE_URL, "https://github.com/eventcore/eventcore#process_manager");
stored data (it derives the ids of the events commands write): never change it."""

REFUSED_EVENT_TYPE: Final = "eventcore.CommandRefused"


def process_command_id(name: str, event_id: uuid.UUID, index: int) -> uuid.UUID:
    """The command id of the ``index``-th command manager ``name`` issues for the
    event ``event_id``: the same on every delivery of that event."""
    return uuid.uuid5(PROCESS_COMMAND_NAMESPACE, f"{name}:{event_id}:{index}")


def refusal_stream(name: str) -> str:
    """The stream where manager ``name`` records the commands that were refused."""
    return f"{name}.refused"


@dataclass(frozen=True, slots=True)
class CommandRefused:
    """A command a process manager issued and ``handle`` refused
    (:class:`~eventcore.errors.BusinessRuleViolation`), recorded as the command's
    outcome in :func:`refusal_stream` under the command's own id, so it is decided
    once: a redelivery finds it and does not run the command again.

    ``event_id``/``position``: the event reacted to; ``index``: the command's place
    among the commands issued for it; ``command``: its class; ``reason``: the
    violation's message."""

    manager: str
    event_id: str
    position: int
    index: int
    command: str
    reason: str


_refusal_codec = Codec()
_refusal_codec.add(CommandRefused, REFUSED_EVENT_TYPE)


class ProcessManager(abc.ABC):
    """Subclass it: give it a ``name``, say what it reads, and decide in ``react``.

    ::

        class OrderSaga(ProcessManager):
            name = "order-saga"
            event_types = ("OrderPlaced",)

            async def react(self, event: RecordedEvent) -> Sequence[Command[Any, Any]]:
                placed = shop_codec.decode(event)
                return [ReserveStock(placed.item, placed.order_id, placed.quantity)]

    ``react`` decides which commands to issue for one event; the runner executes
    them in order through the :class:`~eventcore.application.Application` (its
    codec, retry policy, cache and observers), each under a command id derived from
    (``name``, the event's id, the command's index), with ``causation_id`` the
    event's id and ``correlation_id`` the event's correlation id (its id if it has
    none). ``react`` must be deterministic: the same event yields the same commands
    in the same order, because a redelivered event is recognised by those ids.

    ``name`` keys the checkpoint, the lease and the command ids (it shares the
    namespace of projection names): renaming a manager re-issues every command.
    ``stream_prefix``, ``stream_pattern`` and ``event_types`` filter the log as a
    projection's do. A command that ``handle`` refuses is recorded as a
    :class:`CommandRefused` event (see :func:`refused_commands`) and the manager
    goes on; any other error follows ``failure_policy``.
    """

    name: str
    stream_prefix: str | None = None
    stream_pattern: str | None = None
    event_types: Collection[str] | None = None
    failure_policy: FailurePolicy = FailurePolicy()

    @abc.abstractmethod
    async def react(self, event: RecordedEvent) -> Sequence[Command[Any, Any]]:
        """The commands to issue for ``event`` (empty for none), in order."""


class _ProcessProjection(Projection):
    """A process manager as the runner sees it: a projection whose read model is
    the commands it has issued, kept in the store by their ids."""

    def __init__(self, app: Application, manager: ProcessManager) -> None:
        self.name = manager.name
        self.stream_prefix = manager.stream_prefix
        self.stream_pattern = manager.stream_pattern
        self.event_types = manager.event_types
        self.failure_policy = manager.failure_policy
        self._app = app
        self._manager = manager

    async def handle(self, event: RecordedEvent) -> None:
        commands = _checked_commands(await self._manager.react(event), self._manager, event)
        for index, command in enumerate(commands):
            await self._issue(event, index, command)

    async def _issue(self, event: RecordedEvent, index: int, command: Command[Any, Any]) -> None:
        command_id = process_command_id(self.name, event.event_id, index)
        causation = str(event.event_id)
        correlation = event.metadata.correlation_id or causation
        try:
            await self._app.execute(
                command, command_id=command_id, causation_id=causation, correlation_id=correlation
            )
        except BusinessRuleViolation as refusal:
            # The refusal takes the command's own id, so it is the command's outcome
            # from now on: a redelivery, refused again or not, finds it stored.
            refused = CommandRefused(
                self.name,
                causation,
                event.global_position,
                index,
                type(command).__qualname__,
                str(refusal),
            )
            await execute(
                self._app.store,
                _RecordRefusal(refusal_stream(self.name), refused),
                codec=_refusal_codec,
                command_id=command_id,
                causation_id=causation,
                correlation_id=correlation,
                observer=self._app.observer,
            )

    async def reset(self) -> None:
        """Nothing to empty: what was issued stays issued. A rebuild re-issues the
        same command ids, which the store answers as already applied."""


class _RecordRefusal(Command[None, CommandRefused]):
    def __init__(self, stream: str, refused: CommandRefused) -> None:
        self._stream = stream
        self._refused = refused

    def streams(self) -> list[str]:
        return [self._stream]

    def initial_state(self) -> None:
        return None

    def apply(self, state: None, stream_id: StreamId, event: CommandRefused) -> None:
        return None

    def handle(self, state: None) -> list[tuple[str, CommandRefused]]:
        return [(self._stream, self._refused)]


def _checked_commands(
    commands: object, manager: ProcessManager, event: RecordedEvent
) -> Sequence[Command[Any, Any]]:
    where = (
        f"{type(manager).__qualname__}.react for {event.event_type} at position "
        f"{event.global_position}"
    )
    if isinstance(commands, str | bytes | Command) or not isinstance(commands, Sequence):
        raise ValidationError(
            f"{where} must return a list of commands (empty for none), got {commands!r}"
        )
    for command in commands:
        if not isinstance(command, Command):
            raise ValidationError(
                f"{where} returned {command!r}, which is not a Command (eventcore.Command)"
            )
    return commands


def check_process_manager(manager: object) -> ProcessManager:
    """Validate a process manager before it runs, naming what is wrong."""
    if not isinstance(manager, ProcessManager):
        raise ValidationError(
            f"a process manager runner takes a ProcessManager (subclass eventcore.projection."
            f"ProcessManager), got {manager!r}"
        )
    kind = type(manager).__qualname__
    name = check_reader_name(manager, "the checkpoint, the lease and the command ids")
    try:
        StreamId(refusal_stream(name))
    except ValidationError as exc:
        raise ValidationError(
            f"{kind}.name {name!r} cannot name the stream of refused commands: {exc}"
        ) from exc
    if not inspect.iscoroutinefunction(manager.react):
        raise ValidationError(f"{kind}.react must be an async def, got {manager.react!r}")
    return manager


def _application(app_or_store: object) -> Application:
    from eventcore.application import Application

    if isinstance(app_or_store, Application):
        return app_or_store
    if isinstance(app_or_store, EventStore):
        return Application(app_or_store)
    raise ValidationError(
        f"a process manager runs on an Application or an EventStore, got {app_or_store!r}"
    )


def process_manager_runner(
    app_or_store: Application | EventStore,
    manager: ProcessManager,
    *,
    options: RunnerOptions | None = None,
    holder: str | None = None,
    observer: Observer | None = None,
) -> ProjectionRunner:
    """A :class:`~eventcore.projection.ProjectionRunner` that runs ``manager``:
    ``start()`` / ``await stop()``, ``async with``, ``caught_up()``, ``status()``.

    Commands are executed through ``app_or_store`` (an Application; a bare store
    gets the default codec and retry policy). ``observer`` defaults to the
    application's observers. The store must look events up by id and keep
    checkpoints, leases and dead letters (every bundled store does)."""
    manager = check_process_manager(manager)
    app = _application(app_or_store)
    projection = _ProcessProjection(app, manager)
    return ProjectionRunner(
        app.store,  # type: ignore[arg-type]  # checked by the runner
        projection,
        options=options,
        holder=holder,
        observer=app.observer if observer is None else observer,
    )


async def run_process_manager(
    app_or_store: Application | EventStore,
    manager: ProcessManager,
    *,
    options: RunnerOptions | None = None,
    holder: str | None = None,
) -> None:
    """Run ``manager`` until cancelled (then stop cleanly, checkpoint saved); raise
    :class:`~eventcore.errors.ProjectionFailed` if it fails under its failure policy."""
    runner = process_manager_runner(app_or_store, manager, options=options, holder=holder)
    await runner.run()


async def refused_commands(store: EventReader, name: str) -> list[CommandRefused]:
    """The commands manager ``name`` issued that were refused, oldest first."""
    records = await store.read_stream(refusal_stream(name))
    return [_refusal_codec.decode(record) for record in records]
