"""Projections: read models kept up to date from the global log.

Write a :class:`Projection`, run it with a :class:`ProjectionRunner` (or
:func:`run_projection`), rebuild it with :func:`rebuild_projection`, and ask how
far it is with :func:`projection_status`. A :class:`TransactionalProjection`
keeps its read model in the store's database and runs exactly once
(:class:`ExactlyOnceRunner`). A :class:`ProcessManager` answers events with
commands, run by :func:`run_process_manager`. See ``docs/projections.md``,
``docs/projections-exactly-once.md`` and ``docs/process-managers.md``.
"""

from __future__ import annotations

from eventcore.projection._exactly_once import ExactlyOnceRunner, TransactionalProjection
from eventcore.projection._process import (
    CommandRefused,
    ProcessManager,
    process_command_id,
    process_manager_runner,
    refusal_stream,
    refused_commands,
    run_process_manager,
)
from eventcore.projection._projection import FailurePolicy, Projection
from eventcore.projection._runner import (
    ProjectionRunner,
    RunnerOptions,
    rebuild_projection,
    run_projection,
)
from eventcore.projection._status import ProjectionState, ProjectionStatus, projection_status

__all__ = [
    "CommandRefused",
    "ExactlyOnceRunner",
    "FailurePolicy",
    "ProcessManager",
    "Projection",
    "ProjectionRunner",
    "ProjectionState",
    "ProjectionStatus",
    "RunnerOptions",
    "TransactionalProjection",
    "process_command_id",
    "process_manager_runner",
    "projection_status",
    "rebuild_projection",
    "refusal_stream",
    "refused_commands",
    "run_process_manager",
    "run_projection",
]
