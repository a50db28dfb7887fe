"""The ``eventcore`` command line (also ``python -m eventcore``), built on Click.

Exit codes scripts can rely on: 0 success; 1 a runtime or store failure (an
unreachable server, a missing stream or database, money not conserved); 2 a usage
error (an unknown command or option, a bad value, a bad database URL); 130
interrupted (Ctrl-C) where following until interrupted is not the command's job
(``serve`` and ``streams tail`` end with 0 on Ctrl-C). Errors are one line on
stderr; ``eventcore --debug ...`` adds the traceback.

Click and rich are imported here and in the command modules only, never by
``import eventcore``.
"""

from __future__ import annotations

from eventcore.cli._main import main

__all__ = ["main"]
