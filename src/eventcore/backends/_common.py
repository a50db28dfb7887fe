"""Private helpers every backend shares: argument checks (paging is
:class:`eventcore.store.PagedReads`)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from eventcore.errors import ValidationError
from eventcore.store import check_log_bounds
from eventcore.types import MAX_INT64, StreamId, check_limit, check_version


def check_stream_read(
    stream_id: str, from_version: object, limit: object
) -> tuple[StreamId, int, int | None]:
    stream = StreamId(stream_id)
    start = check_version(from_version, "from_version")
    if start < 1:
        raise ValidationError(f"from_version must be >= 1 (versions start at 1), got {start!r}")
    return stream, start, check_limit(limit)


def check_streams_read(
    stream_ids: Iterable[str], from_versions: Mapping[str, int] | None, limit: object
) -> tuple[list[tuple[StreamId, int]], int | None]:
    """Validate ``read_streams`` arguments: the distinct streams, in the order given,
    each with the version to start from (1 unless ``from_versions`` says otherwise)."""
    given: tuple[object, object] = (stream_ids, from_versions)  # checked at run time too
    # Exact types first: the executor passes a tuple and a dict, and the ABC checks
    # are a measurable share of a memory-store read.
    if type(given[0]) is not tuple and (
        isinstance(given[0], str | bytes) or not isinstance(given[0], Iterable)
    ):
        raise ValidationError(f"stream_ids must be a collection of ids, got {stream_ids!r}")
    if given[1] is not None and type(given[1]) is not dict and not isinstance(given[1], Mapping):
        raise ValidationError(
            f"from_versions must be a mapping of stream id to version, got {from_versions!r}"
        )
    starts = dict.fromkeys(map(StreamId, stream_ids), 1)
    for raw, version in (from_versions or {}).items():
        stream = StreamId(raw)
        if stream not in starts:
            raise ValidationError(
                f"from_versions names stream {stream!r}, which is not among the streams read"
            )
        if type(version) is not int or not 1 <= version <= MAX_INT64:
            # Only now build the name for the message (an f-string per stream and read
            # was a measurable share of the read).
            start = check_version(version, f"from_versions[{stream!r}]")
            raise ValidationError(f"from_versions[{stream!r}] must be >= 1, got {start!r}")
        starts[stream] = version
    return list(starts.items()), check_limit(limit)


def check_log_read(
    after: object, limit: object, stop: object = None
) -> tuple[int, int | None, int | None]:
    """``(after, limit, stop)`` of ``read_all``, validated."""
    first, last = check_log_bounds(after, stop)
    return first, check_limit(limit), last


def check_stream_tail(stream_id: str, count: object) -> tuple[StreamId, int]:
    """Validate ``read_stream_tail`` arguments."""
    stream = StreamId(stream_id)
    if type(count) is not int or not 1 <= count <= MAX_INT64:
        raise ValidationError(f"count must be a positive int (up to 2**63-1), got {count!r}")
    return stream, count
