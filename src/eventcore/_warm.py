"""Filling a :class:`~eventcore.cache.StateCache` from a read of the streams, before
any command ran (:meth:`StateCache.warm`).

The folding is a pure generator of read (and snapshot) steps, like the executor's
plan, driven here against the store. Streams are read many at a time: warming
thousands of entries costs a few round trips per batch, not one per stream.
"""

from __future__ import annotations

from collections.abc import Generator, Iterable, Mapping
from typing import Any, Final

from eventcore._plan_fold import check_stream_count, fold_stream, read_state, unique_streams
from eventcore._plan_steps import (
    DEFAULT_FOLD_PAGE_SIZE,
    LoadSnapshot,
    ReadStreams,
    SaveSnapshot,
    Step,
    Versions,
)
from eventcore.cache import CachedState, StateCache
from eventcore.codec import Codec, default_codec
from eventcore.command import Command, state_reuse_refused
from eventcore.errors import ValidationError
from eventcore.execute import _keeps_snapshots, _read, _save_snapshot
from eventcore.store import EventStore
from eventcore.types import RecordedEvent, StreamId

# Streams per read: big enough that a round trip carries many, small enough that
# one reply (first pages only) stays modest.
WARM_BATCH: Final = 256


async def warm_cache(
    cache: StateCache,
    store: EventStore,
    command: type[Command[Any, Any]] | Command[Any, Any],
    streams: Iterable[str | Iterable[str]],
    codec: Codec | None,
) -> int:
    """See :meth:`StateCache.warm`."""
    template = _template(command)
    if not type(template).reuses_state:
        raise state_reuse_refused(type(template), "StateCache.warm")
    items = _stream_sets(template, streams)
    cache.bind(store)
    plan = warm_plan(template, codec or default_codec, cache, items, DEFAULT_FOLD_PAGE_SIZE)
    reply: Any = None
    while True:
        try:
            step = plan.send(reply)
        except StopIteration as finished:
            filled: int = finished.value
            return filled
        reply = None
        if type(step) is ReadStreams:
            reply = await _read(store, step, first=False)  # lets other tasks run
        elif type(step) is LoadSnapshot:
            reply = await store.load_snapshot(step.key) if _keeps_snapshots(store) else None
        elif type(step) is SaveSnapshot:
            await _save_snapshot(store, step.snapshot)
        else:  # pragma: no cover - warm_plan only yields the steps above
            raise TypeError(f"unknown step {step!r}")


def _template(command: object) -> Command[Any, Any]:
    """An instance to call ``initial_state`` and ``apply`` on: the one given, or one
    with no fields set (the rules of reused state say they read none)."""
    if isinstance(command, Command):
        return command
    if not (isinstance(command, type) and issubclass(command, Command)):
        raise ValidationError(f"warm() needs a Command class or instance, got {command!r}")
    try:
        return command.__new__(command)
    except TypeError as exc:  # an abstract class
        raise ValidationError(
            f"warm() cannot make an instance of {command.__qualname__} ({exc}); pass a "
            "concrete command class, or an instance"
        ) from exc


def _stream_sets(
    command: Command[Any, Any], streams: Iterable[str | Iterable[str]]
) -> list[tuple[StreamId, ...]]:
    """Each item as the declared stream set its entry is for: one stream each for
    a per-stream class, whatever the item."""
    if isinstance(streams, str | bytes) or not isinstance(streams, Iterable):
        raise ValidationError(
            f"warm() needs an iterable of stream ids (or of stream id sequences), got {streams!r}"
        )
    per_stream = type(command).state_per_stream
    sets: list[tuple[StreamId, ...]] = []
    for item in streams:
        declared = (
            (StreamId(item),)
            if isinstance(item, str)
            else tuple(unique_streams(item, "warm()'s stream sets"))
        )
        if per_stream:
            sets += [(stream,) for stream in declared]
        else:
            check_stream_count(command, declared)
            sets.append(declared)
    return list(dict.fromkeys(sets))


def warm_plan(
    command: Command[Any, Any],
    codec: Codec,
    cache: StateCache,
    stream_sets: list[tuple[StreamId, ...]],
    page_size: int | None,
) -> Generator[Step, Any, int]:
    """Fold every stream set and put its entry in ``cache``; return how many."""
    plain = type(command).resolve_streams is Command.resolve_streams and not command.snapshot_every
    for first_set in range(0, len(stream_sets), WARM_BATCH):
        chunk = stream_sets[first_set : first_set + WARM_BATCH]
        if not plain:  # discovered streams or snapshots: the executor's own fold
            for declared in chunk:
                folded, read = yield from read_state(command, codec, declared, None, page_size)
                cache.put(StateCache.key_for(command, declared), folded, read)
            continue
        wanted = tuple(dict.fromkeys(stream for declared in chunk for stream in declared))
        first: Mapping[str, list[RecordedEvent]] = yield ReadStreams(
            wanted, (1,) * len(wanted), page_size
        )
        for declared in chunk:
            state = command.initial_state()
            versions: Versions = {}
            for stream in declared:
                state, versions[stream], _ = yield from fold_stream(
                    command, codec, CachedState(state, ((stream, 0),)), first[stream], page_size
                )
            cache.put(StateCache.key_for(command, declared), state, versions)
    return len(stream_sets)
