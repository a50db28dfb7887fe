"""The state cache as the plan uses it: which entries a command reads and writes.

A command's state is cached either as one entry for its whole stream set
(:class:`StreamSetEntry`, also the "no cache" case) or, for a per-stream command
over several streams, as one entry per stream merged with ``merge_states``
(:class:`PerStreamEntries`). Both answer the same questions for
:func:`eventcore._plan.plan_execution`: look up, read afresh, keep.
"""

from __future__ import annotations

from collections.abc import Generator, Hashable, Mapping
from typing import Any, Literal

from eventcore._plan_fold import (
    closed_under_resolver,
    fold_own_events,
    fold_stream,
    part_start,
    read_state,
)
from eventcore._plan_snapshots import encode_snapshot, snapshot_key
from eventcore._plan_steps import ReadStreams, SaveSnapshot, Step, Versions
from eventcore.cache import CachedState, StateCache
from eventcore.codec import Codec
from eventcore.command import Command
from eventcore.types import RecordedEvent, Snapshot, StreamId


class StreamSetEntry:
    """The cache entry of a command's whole stream set (or no cache at all)."""

    __slots__ = ("cache", "cached", "command", "declared", "key", "plain", "verifies")

    def __init__(
        self, command: Command[Any, Any], cache: StateCache | None, declared: tuple[StreamId, ...]
    ) -> None:
        self.command = command
        self.cache = cache
        self.declared = declared
        self.cached: CachedState | None = None
        # No resolver: every state is closed under it (the common case, asked twice
        # per cache hit, so answered once here).
        self.plain = type(command).resolve_streams is Command.resolve_streams
        if cache is None:
            self.key: Hashable = None
            self.verifies = False
        else:
            self.key = StateCache.key_for(command, declared)
            self.verifies = cache.verify_rate > 0.0  # spares a call per hit when off

    def lookup(self) -> CachedState | None:
        if self.cache is None:
            return None
        self.cached = self.cache.get(self.key)
        return self.cached

    def should_verify(self) -> bool:
        return self.cache is not None and self.cache.should_verify()

    def count(self, counter: Literal["rechecks", "stale"]) -> None:
        if self.cache is not None:
            setattr(self.cache, counter, getattr(self.cache, counter) + 1)

    def read(
        self, codec: Codec, page_size: int | None
    ) -> Generator[Step, Any, tuple[Any, Versions]]:
        return read_state(self.command, codec, self.declared, self.cached, page_size)

    def keep(
        self,
        state: object,
        versions: Versions,
        after: Mapping[str, int],
        written: list[tuple[StreamId, Any]],
    ) -> None:
        """Cache the state as of this command's own append (keyed and ordered as read)."""
        cache = self.cache
        if cache is None:
            return
        if not written:
            cache.put(self.key, state, versions)
            return
        now: Versions = {}
        for stream in versions:  # a loop, not a comprehension: no function call
            now[stream] = after[stream]
        folded = fold_own_events(self.command, state, written)
        if self.plain or closed_under_resolver(self.command, folded, now):
            cache.put(self.key, folded, now)
        else:  # its own events point at a stream it has not read: refold next time
            cache.discard(self.key)


class PerStreamEntries:
    """The cache entries of a per-stream command over several streams: one per
    stream, folded alone, merged into the command's state with ``merge_states``."""

    __slots__ = ("cache", "command", "declared", "found", "keys", "verifies")
    plain = True  # a per-stream class discovers no streams (refused at class definition)

    def __init__(
        self, command: Command[Any, Any], cache: StateCache, declared: tuple[StreamId, ...]
    ) -> None:
        self.command = command
        self.cache = cache
        self.verifies = cache.verify_rate > 0.0
        self.declared = declared
        self.keys = [StateCache.key_for(command, (stream,)) for stream in declared]
        self.found: dict[StreamId, CachedState] = {}

    def lookup(self) -> CachedState | None:
        """The merged state if every stream has an entry (one hit), else None (one
        miss); the entries found are kept for :meth:`read` to start from."""
        found: dict[StreamId, CachedState] = {}
        for stream, key in zip(self.declared, self.keys, strict=True):
            entry = self.cache.peek(key)
            if entry is not None:
                found[stream] = entry
        self.found = found
        if len(found) < len(self.declared):
            self.cache.misses += 1
            return None
        self.cache.hits += 1
        merged = self.command.merge_states({s: e.state for s, e in found.items()})
        return CachedState(merged, tuple((s, e.versions[0][1]) for s, e in found.items()))

    def read(
        self, codec: Codec, page_size: int | None
    ) -> Generator[Step, Any, tuple[Any, Versions]]:
        """Read every stream after its entry (from its snapshot or start if it has
        none) in one read, fold each onto its own state, and merge; remember the
        parts, and snapshot those that replayed enough events."""
        command, declared = self.command, self.declared
        starts: dict[StreamId, CachedState] = {}
        for stream in declared:
            found = self.found.get(stream)
            starts[stream] = found or (yield from part_start(command, stream))
        pages: Mapping[str, list[RecordedEvent]] = yield ReadStreams(
            declared, tuple(starts[s].versions[0][1] + 1 for s in declared), page_size
        )
        states: dict[StreamId, Any] = {}
        versions: Versions = {}
        for stream in declared:
            start = starts[stream]
            states[stream], versions[stream], replayed = yield from fold_stream(
                command, codec, start, pages[stream], page_size
            )
            if command.snapshot_every and replayed >= command.snapshot_every:
                encoded = encode_snapshot(command, states[stream])
                if encoded is not None:
                    key = snapshot_key(command, (stream,))
                    assert key is not None  # snapshot_every is set
                    yield SaveSnapshot(Snapshot(key, ((stream, versions[stream]),), encoded))
        self.found = {s: CachedState(states[s], ((s, versions[s]),)) for s in declared}
        return command.merge_states(states), versions

    def should_verify(self) -> bool:
        return self.cache.should_verify()

    def count(self, counter: Literal["rechecks", "stale"]) -> None:
        setattr(self.cache, counter, getattr(self.cache, counter) + 1)

    def keep(
        self,
        state: object,
        versions: Versions,
        after: Mapping[str, int],
        written: list[tuple[StreamId, Any]],
    ) -> None:
        """Cache each stream's state as of ``after``, with this command's own
        events folded onto the stream they went to."""
        command = self.command
        states = {s: e.state for s, e in self.found.items()}
        for stream, event in written:  # each as a read will decode it
            states[stream] = command.apply(states[stream], stream, event)
        for stream, key in zip(self.declared, self.keys, strict=True):
            self.cache.put(key, states[stream], {stream: after[stream]})
