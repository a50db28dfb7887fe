"""Event store backends: in-memory, SQLite and (with the ``postgres`` extra) PostgreSQL.

This package is the public home of :class:`GroupCommitSettings`, the batching
settings every bundled store that commits takes (``group_commit=``); the stores
themselves live in :mod:`eventcore.backends.memory`,
:mod:`eventcore.backends.sqlite` and :mod:`eventcore.backends.postgres`.
"""

from eventcore.backends._group_commit import GroupCommitSettings

__all__ = ["GroupCommitSettings"]
