"""StreamLister: every store lists its streams in id order, by prefix, page by page."""

from __future__ import annotations

import pytest

from eventcore.errors import ValidationError
from eventcore.store import EventStore, StreamLister, StreamSummary
from eventcore.types import AppendRequest, NewEvent, StreamId


async def _write(store: EventStore, stream: str, count: int, read_too: str | None = None) -> None:
    events = [NewEvent(StreamId(stream), "t.Happened", b"{}") for _ in range(count)]
    expected = {stream: 0} if read_too is None else {stream: 0, read_too: 0}
    await store.append(AppendRequest.create(expected, events))


async def test_streams_are_listed_in_id_order_with_their_versions(any_store: EventStore) -> None:
    assert isinstance(any_store, StreamLister)
    for stream, count in (("order-2", 1), ("account-b", 3), ("account-a", 2)):
        await _write(any_store, stream, count)

    listed = await any_store.list_streams()

    assert listed == [
        StreamSummary("account-a", 2),
        StreamSummary("account-b", 3),
        StreamSummary("order-2", 1),
    ]


async def test_a_prefix_is_literal_and_pages_continue_after_the_last_id(
    any_store: EventStore,
) -> None:
    assert isinstance(any_store, StreamLister)
    for stream in ("acc_1", "acc_2", "acc_3", "accX", "acd", "ac"):
        await _write(any_store, stream, 1)

    first = await any_store.list_streams(prefix="acc_", limit=2)
    rest = await any_store.list_streams(prefix="acc_", after=first[-1].stream_id, limit=2)

    assert [s.stream_id for s in first] == ["acc_1", "acc_2"]
    assert [s.stream_id for s in rest] == ["acc_3"]


async def test_a_stream_only_read_by_a_command_is_not_listed(any_store: EventStore) -> None:
    assert isinstance(any_store, StreamLister)
    await _write(any_store, "written", 1, read_too="only-read")

    assert await any_store.list_streams() == [StreamSummary("written", 1)]


@pytest.mark.parametrize(
    "arguments",
    [{"limit": 0}, {"limit": True}, {"prefix": ""}, {"after": 3}, {"prefix": "a\x00"}],
)
async def test_bad_list_arguments_are_refused(
    any_store: EventStore, arguments: dict[str, object]
) -> None:
    assert isinstance(any_store, StreamLister)
    with pytest.raises(ValidationError, match="list_streams"):
        await any_store.list_streams(**arguments)  # type: ignore[arg-type]
