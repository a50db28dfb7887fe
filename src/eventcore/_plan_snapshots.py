"""Snapshots as the plan sees them: the key a command's snapshot is stored
under, the state encoded for one, and a fold's starting point decoded from one.

A snapshot only saves future work: nothing here fails a command.
"""

from __future__ import annotations

import logging
import weakref
from typing import Any

import msgspec

from eventcore.cache import CachedState
from eventcore.codec import json_encode
from eventcore.command import Command
from eventcore.types import Snapshot, StreamId

# The executor's logger (the plan is part of it): snapshots that cannot be taken.
_log = logging.getLogger("eventcore.execute")
_unencodable_warned: weakref.WeakSet[type] = weakref.WeakSet()


def snapshot_key(command: Command[Any, Any], declared: tuple[StreamId, ...]) -> str | None:
    # The settings were checked when the command's class was defined.
    if not command.snapshot_every:
        return None
    return f"{command.snapshot_name}:{json_encode(declared).decode()}"


def encode_snapshot(command: Command[Any, Any], state: object) -> bytes | None:
    """The state as snapshot bytes, or None when it cannot be encoded. A snapshot
    only saves future work, so this never fails the command; it is logged once
    per class (it will fail the same way every time)."""
    try:
        return json_encode(state)
    except Exception as exc:  # whatever the encoder (or its hook) raised
        cls = type(command)
        if cls not in _unencodable_warned:
            _unencodable_warned.add(cls)
            _log.warning(
                "cannot snapshot the state of %s (%s): %s; its folds go on without "
                "snapshots. Make the state encodable by msgspec (a dataclass or Struct "
                "of plain values), or set snapshot_every = 0.",
                cls.__qualname__,
                type(state).__qualname__,
                exc,
            )
        return None


def from_snapshot(
    command: Command[Any, Any], declared: tuple[StreamId, ...], snapshot: Snapshot | None
) -> CachedState | None:
    if snapshot is None:
        return None
    try:
        state = msgspec.json.decode(snapshot.state, type=command.state_type)
    except (msgspec.DecodeError, ValueError, TypeError):
        return None  # written for an older state class: fold from the start instead
    versions = dict(snapshot.versions)
    for stream in declared:
        versions.setdefault(stream, 0)
    return CachedState(state, tuple(versions.items()))
