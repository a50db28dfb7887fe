"""Projections: read models kept up to date from the global log.

Write a :class:`Projection`, run it with a :class:`ProjectionRunner` (or
:func:`run_projection`), rebuild it with :func:`rebuild_projection`, and ask how
far it is with :func:`projection_status`. See ``docs/projections.md``.
"""

from __future__ import annotations

from eventcore.projection._projection import FailurePolicy, Projection
from eventcore.projection._runner import (
    ProjectionRunner,
    RunnerOptions,
    rebuild_projection,
    run_projection,
)
from eventcore.projection._status import ProjectionState, ProjectionStatus, projection_status

__all__ = [
    "FailurePolicy",
    "Projection",
    "ProjectionRunner",
    "ProjectionState",
    "ProjectionStatus",
    "RunnerOptions",
    "projection_status",
    "rebuild_projection",
    "run_projection",
]
