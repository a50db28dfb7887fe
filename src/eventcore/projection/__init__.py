"""Projections: read models kept up to date from the global log.

Write a :class:`Projection`, run it with a :class:`ProjectionRunner` (or
:func:`run_projection`), rebuild it with :func:`rebuild_projection`, and ask how
far it is with :func:`projection_status`. A :class:`TransactionalProjection`
keeps its read model in the store's database and runs exactly once
(:class:`ExactlyOnceRunner`). See ``docs/projections.md`` and
``docs/projections-exactly-once.md``.
"""

from __future__ import annotations

from eventcore.projection._exactly_once import ExactlyOnceRunner, TransactionalProjection
from eventcore.projection._projection import FailurePolicy, Projection
from eventcore.projection._runner import (
    ProjectionRunner,
    RunnerOptions,
    rebuild_projection,
    run_projection,
)
from eventcore.projection._status import ProjectionState, ProjectionStatus, projection_status

__all__ = [
    "ExactlyOnceRunner",
    "FailurePolicy",
    "Projection",
    "ProjectionRunner",
    "ProjectionState",
    "ProjectionStatus",
    "RunnerOptions",
    "TransactionalProjection",
    "projection_status",
    "rebuild_projection",
    "run_projection",
]
