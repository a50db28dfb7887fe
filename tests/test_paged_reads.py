"""iter_stream and iter_all live once, in eventcore.store.PagedReads."""

from __future__ import annotations

from collections.abc import Collection

import pytest

from eventcore import InMemoryEventStore, SQLiteEventStore, ValidationError
from eventcore.backends.postgres import PostgresEventStore
from eventcore.store import PagedReads
from eventcore.testing.contract import append_new, append_one_each, collect
from eventcore.types import RecordedEvent


class _TwoReads(PagedReads):
    """A backend that implements only the two reads (here over a memory store)
    and records how it was asked."""

    def __init__(self, inner: InMemoryEventStore) -> None:
        self.inner = inner
        self.calls: list[tuple[str, int, int | None]] = []

    async def read_stream(
        self, stream_id: str, *, from_version: int = 1, limit: int | None = None
    ) -> list[RecordedEvent]:
        self.calls.append(("read_stream", from_version, limit))
        return await self.inner.read_stream(stream_id, from_version=from_version, limit=limit)

    async def read_all(
        self,
        *,
        after: int = 0,
        limit: int | None = None,
        stream_prefix: str | None = None,
        stream_pattern: str | None = None,
        event_types: Collection[str] | None = None,
    ) -> list[RecordedEvent]:
        self.calls.append(("read_all", after, limit))
        return await self.inner.read_all(
            after=after,
            limit=limit,
            stream_prefix=stream_prefix,
            stream_pattern=stream_pattern,
            event_types=event_types,
        )


@pytest.mark.parametrize("store_type", [InMemoryEventStore, SQLiteEventStore, PostgresEventStore])
def test_every_bundled_store_walks_with_the_one_paging_implementation(
    store_type: type[PagedReads],
) -> None:
    assert store_type.iter_stream is PagedReads.iter_stream
    assert store_type.iter_all is PagedReads.iter_all


async def test_a_backend_with_only_the_two_reads_walks_a_stream_page_by_page() -> None:
    inner = InMemoryEventStore()
    await append_new(inner, "s", 5)
    reader = _TwoReads(inner)
    got = await collect(reader.iter_stream("s", from_version=2, page_size=2))
    assert [e.stream_version for e in got] == [2, 3, 4, 5]
    # a full last page costs one more, empty, read: the walk cannot know it was the last
    assert reader.calls == [("read_stream", 2, 2), ("read_stream", 4, 2), ("read_stream", 6, 2)]


async def test_a_backend_with_only_the_two_reads_walks_the_filtered_log_page_by_page() -> None:
    inner = InMemoryEventStore()
    await append_one_each(inner, ["a-1", "b-1", "a-2", "a-3"])
    reader = _TwoReads(inner)
    got = await collect(reader.iter_all(page_size=2, stream_prefix="a-"))
    assert [e.stream_id for e in got] == ["a-1", "a-2", "a-3"]
    assert reader.calls == [("read_all", 0, 2), ("read_all", 3, 2)]


async def test_a_bad_filter_is_refused_when_the_walk_is_asked_for() -> None:
    reader = _TwoReads(InMemoryEventStore())
    with pytest.raises(ValidationError, match="stream_prefix"):
        reader.iter_all(stream_prefix="")
    assert reader.calls == []


async def test_a_bad_page_size_is_refused_before_any_read() -> None:
    reader = _TwoReads(InMemoryEventStore())
    with pytest.raises(ValidationError, match="page_size"):
        await collect(reader.iter_stream("s", page_size=0))
    assert reader.calls == []
