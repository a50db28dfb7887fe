"""An event store in one SQLite file, shared safely by several processes.

Needs nothing beyond the standard library's ``sqlite3``. See
:class:`SQLiteEventStore`; the ordering argument (why a tailing reader never misses
an event) is in :mod:`eventcore.backends.sqlite._ops`.
"""

from eventcore.backends.sqlite._store import SQLiteEventStore

__all__ = ["SQLiteEventStore"]
