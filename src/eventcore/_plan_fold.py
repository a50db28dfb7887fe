"""Folding a command's streams into its state, as steps of the plan.

Streams are read and folded in order, page by page (a long stream is never held
in memory whole); after each stream the command's resolver may name more, which
are read in turn (every stream once per attempt). A fold starts from a cached
state, a snapshot, or the beginning.
"""

from __future__ import annotations

from collections.abc import Collection, Generator, Iterable, Mapping
from typing import Any

from eventcore._plan_snapshots import encode_snapshot, from_snapshot, snapshot_key
from eventcore._plan_steps import LoadSnapshot, ReadStreams, SaveSnapshot, Step, Versions
from eventcore.cache import CachedState
from eventcore.codec import Codec
from eventcore.command import Command
from eventcore.errors import StateReuseMismatch, TooManyStreams, ValidationError
from eventcore.types import RecordedEvent, Snapshot, StreamId


def unique_streams(raw: Iterable[str], source: str) -> list[StreamId]:
    if type(raw) is list and len(raw) == 1:
        return [StreamId(raw[0])]  # one stream, the usual command: nothing to de-duplicate
    if not is_collection(raw):
        raise ValidationError(f"{source} must return an iterable of stream ids, got {raw!r}")
    return list(dict.fromkeys(map(StreamId, raw)))


def is_collection(value: object) -> bool:
    """An iterable that is not a string (which would iterate as characters) nor a
    mapping (which would iterate as its keys)."""
    if type(value) is list or type(value) is tuple:
        return True  # what commands return: skip the ABC checks below, the dearer part
    return isinstance(value, Iterable) and not isinstance(value, str | bytes | Mapping)


def check_stream_count(command: Command[Any, Any], streams: Collection[StreamId]) -> None:
    """Bound the streams of one execution: a resolver that names a new stream each
    time it is asked would otherwise read (and remember) streams forever."""
    limit = type(command).max_streams
    if len(streams) > limit:
        last = list(streams)[-5:]
        raise TooManyStreams(type(command).__qualname__, limit, last)


def _fold(
    command: Command[Any, Any],
    codec: Codec,
    start: CachedState,
    page_size: int | None,
) -> Generator[Step, Any, tuple[Any, Versions, int]]:
    """Fold every event after ``start``'s versions onto its state, stream by stream
    in fold order, asking the resolver after each; return the state, the versions
    and how many events were replayed."""
    state = start.state
    versions: Versions = dict(start.versions)
    pending = list(versions)
    replayed = 0
    while pending:
        batch = tuple(pending)
        pending = []
        pages: Mapping[str, list[RecordedEvent]] = yield ReadStreams(
            batch, tuple(versions[s] + 1 for s in batch), page_size
        )
        for stream in batch:
            events = pages[stream]
            while True:
                for record in events:
                    state = command.apply(state, stream, codec.decode(record))
                replayed += len(events)
                if events:
                    versions[stream] = events[-1].stream_version
                if page_size is None or len(events) < page_size:
                    break
                more = yield ReadStreams((stream,), (versions[stream] + 1,), page_size)
                events = more[stream]
            for found in unique_streams(command.resolve_streams(state), "resolve_streams()"):
                if found not in versions:
                    versions[found] = 0
                    pending.append(found)
            check_stream_count(command, versions)
    return state, versions, replayed


def _initial(command: Command[Any, Any], declared: tuple[StreamId, ...]) -> CachedState:
    return CachedState(command.initial_state(), tuple((s, 0) for s in declared))


def read_state(
    command: Command[Any, Any],
    codec: Codec,
    declared: tuple[StreamId, ...],
    cached: CachedState | None,
    page_size: int | None,
) -> Generator[Step, Any, tuple[Any, Versions]]:
    """Fold the command's streams, starting from the cache, else from a snapshot,
    else from the beginning; take a snapshot if the fold replayed enough events."""
    snapshots = snapshot_key(command, declared)
    start = cached
    if start is None and snapshots is not None:
        start = from_snapshot(command, declared, (yield LoadSnapshot(snapshots)))
    state, versions, replayed = yield from _fold(
        command, codec, start or _initial(command, declared), page_size
    )
    if snapshots is not None and replayed >= command.snapshot_every:
        encoded = encode_snapshot(command, state)
        if encoded is not None:
            yield SaveSnapshot(Snapshot(snapshots, tuple(versions.items()), encoded))
    return state, versions


def part_start(command: Command[Any, Any], stream: StreamId) -> Generator[Step, Any, CachedState]:
    """Where one stream of a per-stream state starts folding: its snapshot (the
    one a command declaring only that stream keeps), else its beginning."""
    key = snapshot_key(command, (stream,))
    if key is not None:
        start = from_snapshot(command, (stream,), (yield LoadSnapshot(key)))
        if start is not None and len(start.versions) == 1:
            return start
    return CachedState(command.initial_state(), ((stream, 0),))


def fold_stream(
    command: Command[Any, Any],
    codec: Codec,
    start: CachedState,
    events: list[RecordedEvent],
    page_size: int | None,
) -> Generator[Step, Any, tuple[Any, int, int]]:
    """Fold one stream onto ``start`` (its state and version) from its first page
    on; return the state, its version and how many events were replayed."""
    state = start.state
    stream, version = start.versions[0]
    replayed = 0
    while True:
        for record in events:
            state = command.apply(state, stream, codec.decode(record))
        replayed += len(events)
        if events:
            version = events[-1].stream_version
        if page_size is None or len(events) < page_size:
            return state, version, replayed
        events = (yield ReadStreams((stream,), (version + 1,), page_size))[stream]


def verify_reuse(
    command: Command[Any, Any], codec: Codec, entry: CachedState, page_size: int | None
) -> Generator[Step, Any, None]:
    """Fold ``entry``'s streams afresh with this command, up to exactly the cached
    versions, and refuse the cached state if it differs (a command that breaks the
    rules of reused state, its ``apply`` reading its own fields, say)."""
    state = command.initial_state()
    for stream, version in entry.versions:
        done = 0
        while done < version:
            limit = version - done if page_size is None else min(page_size, version - done)
            page = (yield ReadStreams((stream,), (done + 1,), limit))[stream]
            if not page:
                break  # cannot happen while events are immutable; the states will differ
            for record in page:
                state = command.apply(state, stream, codec.decode(record))
            done += len(page)
    if state != entry.state:
        raise StateReuseMismatch(type(command).__qualname__, entry.state, state)


def closed_under_resolver(
    command: Command[Any, Any], state: object, known: Collection[StreamId]
) -> bool:
    """Whether every stream the resolver names for ``state`` is among ``known``, the
    streams it was folded from. A cached state that points at an unread stream (its
    own events named it, say) must not be decided on without reading that stream
    and version-checking it."""
    if type(command).resolve_streams is Command.resolve_streams:
        return True  # the default resolver names no stream, whatever the state
    found = unique_streams(command.resolve_streams(state), "resolve_streams()")
    return all(stream in known for stream in found)


def fold_own_events(
    command: Command[Any, Any], state: Any, written: list[tuple[StreamId, Any]]
) -> Any:
    """The state after the events this command just wrote, as a fresh read would
    fold them: ``written`` holds each event decoded from its payload (see
    ``Codec._new_event_and_read_back``), so it equals what a read returns."""
    for stream, event in written:
        state = command.apply(state, stream, event)
    return state
