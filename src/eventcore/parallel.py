"""Running a batch of commands concurrently, in submission order per stream.

:func:`execute_all` runs every command of a batch with
:func:`eventcore.execute.execute`, at most ``concurrency`` at a time, and returns
their outcomes in submission order::

    transfers = [Transfer("alice", "bob", 10), Transfer("carol", "dave", 5)]
    outcomes = await execute_all(store, transfers, concurrency=8, codec=bank_codec)
    for transfer, outcome in zip(transfers, outcomes, strict=True):
        if isinstance(outcome, Exception):
            print(f"{transfer} failed: {outcome}")

Every keyword argument other than ``concurrency`` and ``command_ids`` goes to
``execute`` unchanged (``codec=``, ``retry=``, ``correlation_id=``, ...); a name
``execute`` does not accept raises ``TypeError`` before anything runs.
``command_ids``, one per command (``None`` for none), gives each command its own
``command_id``, so that retrying a batch whose outcome is unknown writes each
command at most once; one ``command_id`` for the whole batch is refused, as every
command after the first would be taken for its replay.

Ordering. A command's streams are its *declared* ones, ``command.streams()``. A
command does not start before every earlier command of the batch that declares a
common stream has finished (committed or failed); commands with disjoint streams
run concurrently. Streams a command discovers at run time through
``resolve_streams`` cannot be known in advance and are not ordered here: commands
racing on them are kept consistent only by the store's version checks (a conflict,
then a retry with fresh state). Separate calls are not ordered against each other.

How. When the batch is submitted, each command is linked to the last earlier
command on each of its streams; it becomes *ready* once all those predecessors
have finished, and ready commands are started lowest index first while fewer than
``concurrency`` run. Because a predecessor always has a lower index the links form
no cycle: the lowest-index unfinished command is always ready or running, and a
running command holds a slot while waiting on nothing of ours, so the batch cannot
deadlock. Since each predecessor waited for its own predecessors, a command starts
only after *every* earlier command on a shared stream has finished. Per-stream
locks taken in sorted order would also be deadlock-free but do not preserve
submission order: with ``{A}, {A, B}, {B}`` the second waits for ``A`` without
holding ``B`` yet, so the third can take ``B`` and overtake it. Only running
commands have tasks, so a batch of any size costs ``concurrency`` tasks.

Failures. A command that fails (``BusinessRuleViolation``, ``RetriesExhausted``,
a store error, ...) does not stop the others: its exception takes its slot in the
result, as with ``asyncio.gather(..., return_exceptions=True)``, and later
commands on its streams run against the state it left (it wrote nothing). Bad
arguments — ``concurrency`` not a positive int, something that is not a
:class:`~eventcore.command.Command`, an invalid stream id — raise
:class:`~eventcore.errors.ValidationError` before anything runs. Cancelling the
caller cancels the running commands and waits for them to end before the
``CancelledError`` propagates.
"""

from __future__ import annotations

import asyncio
import heapq
import inspect
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeAlias, Unpack

from eventcore._command_ids import CommandEventIds, CommandId
from eventcore.command import Command
from eventcore.errors import ValidationError
from eventcore.execute import ExecuteOptions, ExecutionResult, execute
from eventcore.store import EventStore
from eventcore.types import StreamId

Outcome: TypeAlias = ExecutionResult | Exception


async def execute_all(
    store: EventStore,
    commands: Iterable[Command[Any, Any]],
    *,
    concurrency: int = 16,
    command_ids: Iterable[CommandId | None] | None = None,
    **execute_kwargs: Unpack[ExecuteOptions],
) -> list[ExecutionResult | Exception]:
    """Run ``commands`` at most ``concurrency`` at a time; outcomes in submission order.

    Commands that declare a common stream run one after the other in submission
    order; each slot of the result holds the command's :class:`ExecutionResult`, or
    the exception it failed with. See the module documentation for the details.
    """
    batch = _check_commands(commands)
    _check_concurrency(concurrency)
    _check_execute_kwargs(store, execute_kwargs)
    keys = _check_command_ids(command_ids, len(batch))
    schedule = _Schedule.of([_declared_streams(command) for command in batch])
    per_command = [
        execute_kwargs if key is None else {**execute_kwargs, "command_id": key} for key in keys
    ]
    return await _run(store, batch, schedule, concurrency, per_command)


def _check_commands(commands: object) -> list[Command[Any, Any]]:
    if isinstance(commands, Command | str) or not isinstance(commands, Iterable):
        raise ValidationError(f"commands must be an iterable of Command, got {commands!r}")
    batch = list(commands)
    for index, command in enumerate(batch):
        if not isinstance(command, Command):
            raise ValidationError(
                f"commands[{index}] is {command!r}, not a Command; "
                "every item of the batch must subclass eventcore.Command"
            )
    return batch


def _check_concurrency(concurrency: object) -> None:
    if type(concurrency) is not int or concurrency < 1:
        raise ValidationError(f"concurrency must be a positive int, got {concurrency!r}")


def _check_execute_kwargs(store: EventStore, kwargs: Mapping[str, Any]) -> None:
    if "command_id" in kwargs:
        raise ValidationError(
            f"execute_all() got command_id={kwargs['command_id']!r}, which would be shared "
            "by every command of the batch; give each its own with command_ids=[...]"
        )
    # Checked against execute()'s own signature, so its new keywords pass unchanged.
    try:
        inspect.signature(execute).bind(store, None, **kwargs)
    except TypeError as exc:
        raise TypeError(f"execute_all() passes keyword arguments to execute(): {exc}") from None


def _check_command_ids(command_ids: object, count: int) -> list[str | None]:
    if command_ids is None:
        return [None] * count
    if isinstance(command_ids, str | bytes) or not isinstance(command_ids, Iterable):
        raise ValidationError(
            f"command_ids must be an iterable with one command id (or None) per "
            f"command, got {command_ids!r}"
        )
    keys: list[str | None] = []
    for index, value in enumerate(command_ids):
        ids = CommandEventIds.of(value, f"command_ids[{index}]")
        keys.append(None if ids is None else ids.command_id)
    if len(keys) != count:
        raise ValidationError(
            f"execute_all() got {len(keys)} command ids for {count} command(s); "
            "give one per command, None for a command without"
        )
    return keys


def _declared_streams(command: Command[Any, Any]) -> list[StreamId]:
    raw = command.streams()
    if isinstance(raw, str) or not isinstance(raw, Iterable):
        raise ValidationError(
            f"{type(command).__qualname__}.streams() must return an iterable of stream "
            f"ids, got {raw!r}"
        )
    return list(dict.fromkeys(StreamId(stream) for stream in raw))


@dataclass(slots=True)
class _Schedule:
    """Which commands wait for which: pure bookkeeping over batch indices, no I/O."""

    waiting: list[int]  # unfinished predecessors of each command
    successors: list[list[int]]  # commands to release when each one finishes
    ready: list[int] = field(default_factory=list)  # a heap: lowest index starts first

    @classmethod
    def of(cls, stream_sets: Sequence[Iterable[StreamId]]) -> _Schedule:
        """Link each command to the last earlier command on each of its streams."""
        schedule = cls([0] * len(stream_sets), [[] for _ in stream_sets])
        last: dict[StreamId, int] = {}
        for index, streams in enumerate(stream_sets):
            predecessors = {last[s] for s in streams if s in last}
            for predecessor in predecessors:
                schedule.successors[predecessor].append(index)
            schedule.waiting[index] = len(predecessors)
            last.update(dict.fromkeys(streams, index))
        schedule.ready = [i for i, count in enumerate(schedule.waiting) if count == 0]
        return schedule

    def take_ready(self) -> int:
        return heapq.heappop(self.ready)

    def finish(self, index: int) -> None:
        for successor in self.successors[index]:
            self.waiting[successor] -= 1
            if self.waiting[successor] == 0:
                heapq.heappush(self.ready, successor)


async def _run(
    store: EventStore,
    batch: Sequence[Command[Any, Any]],
    schedule: _Schedule,
    concurrency: int,
    execute_kwargs: Sequence[Mapping[str, Any]],
) -> list[Outcome]:
    outcomes: dict[int, Outcome] = {}
    running: dict[asyncio.Task[Outcome], int] = {}
    # The task group cancels and awaits the running commands if we are cancelled.
    async with asyncio.TaskGroup() as group:
        while schedule.ready or running:
            while schedule.ready and len(running) < concurrency:
                index = schedule.take_ready()
                task = group.create_task(_outcome(store, batch[index], execute_kwargs[index]))
                running[task] = index
            finished, _ = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
            for task in finished:
                index = running.pop(task)
                outcomes[index] = task.result()
                schedule.finish(index)
    return [outcomes[index] for index in range(len(batch))]


async def _outcome(
    store: EventStore, command: Command[Any, Any], execute_kwargs: Mapping[str, Any]
) -> Outcome:
    try:
        return await execute(store, command, **execute_kwargs)
    except Exception as exc:  # the failure is this command's outcome, not the batch's
        return exc
