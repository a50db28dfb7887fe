"""Driving the executor by hand: the plan and its steps.

:func:`execute` is a loop around a pure generator, :func:`plan_execution`, which
yields the I/O it needs as step objects and is sent their results (an append's
version conflict or refusal is thrown into it). This module is the public home of
that generator, its step types and :func:`run_plan`, for code that drives the
executor itself: a test that feeds a command chosen results with no store and no
event loop (as :mod:`eventcore.testing.scenario` does), a sync facade, or a
wrapper that adds its own I/O. Applications that just run commands use
:func:`eventcore.execute` and need none of it (see ADR 1).

Each step names one piece of I/O and what to send back:

- :class:`ReadStreams`: read the streams; send ``dict[str, list[RecordedEvent]]``.
- :class:`AppendEvents`: append ``request``; send the
  :class:`~eventcore.types.AppendResult`, or throw the
  :class:`~eventcore.errors.VersionConflict` (or ``ValidationError``) it raised.
- :class:`Sleep`: wait ``seconds`` before a retry; send ``None``.
- :class:`LoadSnapshot` / :class:`SaveSnapshot`: snapshot I/O, for commands that
  keep snapshots.
- :class:`LookupEvents`: find stored events by id (commands run with a
  ``command_id``).
"""

from eventcore._plan import (
    AppendEvents,
    LoadSnapshot,
    LookupEvents,
    Plan,
    ReadStreams,
    SaveSnapshot,
    Sleep,
    Step,
    plan_execution,
)
from eventcore.execute import run_plan

__all__ = [
    "AppendEvents",
    "LoadSnapshot",
    "LookupEvents",
    "Plan",
    "ReadStreams",
    "SaveSnapshot",
    "Sleep",
    "Step",
    "plan_execution",
    "run_plan",
]
