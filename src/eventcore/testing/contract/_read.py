"""Contract: reading streams — paging, stream ids, lifecycle, immutability."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from typing import Any, cast

import pytest

from eventcore.errors import InvalidStreamId, StoreClosed, ValidationError
from eventcore.store import EventStore
from eventcore.testing.contract._support import (
    ContractFixtures,
    append_new,
    append_request,
    collect,
    event_ids,
    new_event,
    positions,
    stream_ids,
    versions,
    whole_log,
)
from eventcore.types import EventMetadata

UNUSUAL_STREAM_IDS = {
    "quotes": 'it\'s a "quoted" stream',
    "backslashes": "back\\slash\\",
    "percent": "100%",
    "underscore": "under_score",
    "sql": "x'); DROP TABLE events; --",
    "unicode": "ünï-çødé-流",
    "astral": "emoji-\U0001f642",
    "inner-tab": "tab\there",
    "255-ascii": "x" * 255,
    "255-multibyte": "流" * 255,
}

INVALID_STREAM_IDS: dict[str, object] = {
    "empty": "",
    "white-space": "   ",
    "256-chars": "x" * 256,
    "star": "acc-*",
    "question-mark": "acc-?",
    "open-bracket": "acc-[1",
    "close-bracket": "acc-1]",
    "not-a-str": 42,
}

_Operation = Callable[[EventStore], Awaitable[object]]

_OPERATIONS_AFTER_CLOSE: dict[str, _Operation] = {
    "append": lambda s: s.append(append_request({"a": 0}, [new_event("a")])),
    "read_stream": lambda s: s.read_stream("a"),
    "read_streams": lambda s: s.read_streams(["a"]),
    "read_stream_tail": lambda s: s.read_stream_tail("a"),
    "stream_version": lambda s: s.stream_version("a"),
    "read_all": lambda s: s.read_all(),
    "head_position": lambda s: s.head_position(),
    "iter_stream": lambda s: collect(s.iter_stream("a")),
    "iter_all": lambda s: collect(s.iter_all()),
}


def _by_name(cases: Mapping[str, object]) -> pytest.MarkDecorator:
    return pytest.mark.parametrize("case", list(cases.values()), ids=list(cases))


class StreamReadContract(ContractFixtures):
    # -- missing streams and isolation -------------------------------------------------

    @pytest.mark.asyncio
    async def test_missing_stream_reads_empty(self, store: EventStore) -> None:
        await append_new(store, "present")
        assert await store.read_stream("absent") == []

    @pytest.mark.asyncio
    async def test_missing_stream_is_at_version_zero(self, store: EventStore) -> None:
        await append_new(store, "present")
        assert await store.stream_version("absent") == 0

    @pytest.mark.asyncio
    async def test_a_stream_returns_only_its_own_events(self, store: EventStore) -> None:
        a = await append_new(store, "a", 2)
        await append_new(store, "b", 3)
        await append_new(store, "a-b", 1)
        got = await store.read_stream("a")
        assert stream_ids(got) == ["a", "a"]
        assert positions(got) == list(a.positions)

    # -- paging ------------------------------------------------------------------------

    @pytest.mark.asyncio
    async def test_read_stream_from_version_starts_at_that_version(self, store: EventStore) -> None:
        await append_new(store, "s", 5)
        assert versions(await store.read_stream("s", from_version=3)) == [3, 4, 5]

    @pytest.mark.asyncio
    async def test_read_stream_limit_caps_the_page(self, store: EventStore) -> None:
        await append_new(store, "s", 5)
        assert versions(await store.read_stream("s", limit=2)) == [1, 2]

    @pytest.mark.asyncio
    async def test_read_stream_pages_with_from_version_and_limit_cover_the_stream(
        self, store: EventStore
    ) -> None:
        await append_new(store, "s", 10)
        pages = [await store.read_stream("s", from_version=v, limit=3) for v in (1, 4, 7, 10)]
        assert [versions(p) for p in pages] == [[1, 2, 3], [4, 5, 6], [7, 8, 9], [10]]

    @pytest.mark.asyncio
    async def test_read_stream_from_version_past_the_end_is_empty(self, store: EventStore) -> None:
        await append_new(store, "s", 3)
        assert await store.read_stream("s", from_version=4) == []

    @pytest.mark.asyncio
    @pytest.mark.parametrize("from_version", [0, -1])
    async def test_read_stream_rejects_from_version_below_one(
        self, store: EventStore, from_version: int
    ) -> None:
        with pytest.raises(ValidationError):
            await store.read_stream("s", from_version=from_version)

    @pytest.mark.asyncio
    @pytest.mark.parametrize("limit", [0, -1])
    async def test_read_stream_rejects_limit_below_one(self, store: EventStore, limit: int) -> None:
        with pytest.raises(ValidationError):
            await store.read_stream("s", limit=limit)

    @pytest.mark.asyncio
    async def test_read_streams_returns_each_stream_and_empty_for_missing(
        self, store: EventStore
    ) -> None:
        a = await append_new(store, "a", 2)
        b = await append_new(store, "b", 1)
        await append_new(store, "c", 1)
        got = await store.read_streams(["a", "missing", "b"])
        assert set(got) == {"a", "missing", "b"}
        assert positions(got["a"]) == list(a.positions)
        assert positions(got["b"]) == list(b.positions)
        assert got["missing"] == []

    @pytest.mark.asyncio
    async def test_read_streams_starts_each_stream_at_its_own_version_and_keeps_order(
        self, store: EventStore
    ) -> None:
        a = await append_new(store, "a", 5)
        b = await append_new(store, "b", 3)
        got = await store.read_streams(["b", "a", "c"], from_versions={"a": 4, "c": 2})
        assert list(got) == ["b", "a", "c"]
        assert positions(got["a"]) == list(a.positions[3:])
        assert positions(got["b"]) == list(b.positions)
        assert got["c"] == []

    @pytest.mark.asyncio
    async def test_read_streams_limit_applies_to_each_stream(self, store: EventStore) -> None:
        a = await append_new(store, "a", 5)
        b = await append_new(store, "b", 3)
        got = await store.read_streams(["a", "b"], from_versions={"a": 2}, limit=2)
        assert positions(got["a"]) == list(a.positions[1:3])
        assert positions(got["b"]) == list(b.positions[:2])

    @pytest.mark.asyncio
    @pytest.mark.parametrize(
        "kwargs",
        [
            {"from_versions": {"a": 0}},
            {"from_versions": {"a": -1}},
            {"from_versions": {"elsewhere": 2}},
            {"limit": 0},
        ],
    )
    async def test_read_streams_rejects_bad_start_versions_and_limits(
        self, store: EventStore, kwargs: dict[str, Any]
    ) -> None:
        with pytest.raises(ValidationError):
            await store.read_streams(["a"], **kwargs)

    @pytest.mark.asyncio
    async def test_stream_version_counts_events_without_reading_them(
        self, store: EventStore
    ) -> None:
        await append_new(store, "s", 4)
        await append_new(store, "other", 2)
        assert await store.stream_version("s") == 4

    @pytest.mark.asyncio
    async def test_head_position_is_zero_for_an_empty_store(self, store: EventStore) -> None:
        assert await store.head_position() == 0

    @pytest.mark.asyncio
    async def test_head_position_is_the_last_appended_position(self, store: EventStore) -> None:
        await append_new(store, "a", 2)
        result = await append_new(store, "b", 3)
        assert await store.head_position() == result.positions[-1]

    # -- iter_stream -------------------------------------------------------------------

    @pytest.mark.asyncio
    async def test_iter_stream_walks_every_event_across_pages(self, store: EventStore) -> None:
        await append_new(store, "s", 10)
        await append_new(store, "other", 4)
        got = await collect(store.iter_stream("s", page_size=3))
        assert versions(got) == list(range(1, 11))
        assert stream_ids(got) == ["s"] * 10

    @pytest.mark.asyncio
    async def test_iter_stream_walks_a_stream_whose_length_is_a_multiple_of_the_page_size(
        self, store: EventStore
    ) -> None:
        await append_new(store, "s", 9)
        got = await collect(store.iter_stream("s", page_size=3))
        assert versions(got) == list(range(1, 10))

    @pytest.mark.asyncio
    async def test_iter_stream_starts_at_from_version(self, store: EventStore) -> None:
        await append_new(store, "s", 10)
        got = await collect(store.iter_stream("s", from_version=5, page_size=3))
        assert versions(got) == list(range(5, 11))

    @pytest.mark.asyncio
    async def test_iter_stream_of_a_missing_stream_yields_nothing(self, store: EventStore) -> None:
        await append_new(store, "s", 2)
        assert await collect(store.iter_stream("absent", page_size=3)) == []

    @pytest.mark.asyncio
    async def test_iter_stream_rejects_page_size_zero(self, store: EventStore) -> None:
        with pytest.raises(ValidationError):
            await collect(store.iter_stream("s", page_size=0))

    # -- stream ids ----------------------------------------------------------------------

    @pytest.mark.asyncio
    @_by_name(UNUSUAL_STREAM_IDS)
    async def test_unusual_stream_id_round_trips_exactly(
        self, store: EventStore, case: str
    ) -> None:
        await append_new(store, "neighbour")
        result = await append_new(store, case, 2)
        got = await store.read_stream(case)
        assert stream_ids(got) == [case, case]
        assert positions(got) == list(result.positions)
        assert await store.stream_version(case) == 2
        assert [str(k) for k in await store.read_streams([case])] == [case]
        assert stream_ids(await whole_log(store)) == ["neighbour", case, case]

    @pytest.mark.asyncio
    async def test_stream_id_surrounding_white_space_is_trimmed(self, store: EventStore) -> None:
        await store.append(append_request({"  padded ": 0}, [new_event(" padded")]))
        assert versions(await store.read_stream("padded")) == [1]
        assert stream_ids(await whole_log(store)) == ["padded"]

    @pytest.mark.asyncio
    @_by_name(INVALID_STREAM_IDS)
    async def test_invalid_stream_id_is_rejected_by_read_stream(
        self, store: EventStore, case: object
    ) -> None:
        with pytest.raises(InvalidStreamId):
            await store.read_stream(cast(str, case))

    @pytest.mark.asyncio
    @_by_name(INVALID_STREAM_IDS)
    async def test_invalid_stream_id_is_rejected_by_stream_version(
        self, store: EventStore, case: object
    ) -> None:
        with pytest.raises(InvalidStreamId):
            await store.stream_version(cast(str, case))

    @pytest.mark.asyncio
    @_by_name(INVALID_STREAM_IDS)
    async def test_invalid_stream_id_is_rejected_by_read_streams(
        self, store: EventStore, case: object
    ) -> None:
        with pytest.raises(InvalidStreamId):
            await store.read_streams(["fine", cast(str, case)])

    @pytest.mark.asyncio
    @_by_name(INVALID_STREAM_IDS)
    async def test_invalid_stream_id_is_rejected_by_append_request(
        self, store: EventStore, case: object
    ) -> None:
        with pytest.raises(InvalidStreamId):
            await store.append(append_request({cast(str, case): 0}))
        assert await store.head_position() == 0

    # -- lifecycle -----------------------------------------------------------------------

    @pytest.mark.asyncio
    @_by_name(_OPERATIONS_AFTER_CLOSE)
    async def test_use_after_close_raises_store_closed(
        self, store: EventStore, case: _Operation
    ) -> None:
        await append_new(store, "a")
        await store.close()
        with pytest.raises(StoreClosed):
            await case(store)

    @pytest.mark.asyncio
    async def test_closing_twice_is_harmless(self, store: EventStore) -> None:
        await store.close()
        await store.close()
        with pytest.raises(StoreClosed):
            await store.read_all()

    # -- immutability ----------------------------------------------------------------------

    @pytest.mark.asyncio
    async def test_mutating_returned_lists_does_not_change_the_store(
        self, store: EventStore
    ) -> None:
        await append_new(store, "s", 3)
        expected = event_ids(await store.read_stream("s"))
        (await store.read_stream("s")).clear()
        (await store.read_all()).pop()
        (await store.read_streams(["s"]))["s"].reverse()
        assert event_ids(await store.read_stream("s")) == expected
        assert event_ids(await store.read_all()) == expected
        assert event_ids((await store.read_streams(["s"]))["s"]) == expected

    @pytest.mark.asyncio
    async def test_changing_the_callers_metadata_after_append_does_not_change_the_store(
        self, store: EventStore
    ) -> None:
        user: dict[str, Any] = {"role": "clerk"}
        await store.append(
            append_request({"s": 0}, [new_event("s", metadata=EventMetadata(user=user))])
        )
        user["role"] = "admin"
        [got] = await store.read_stream("s")
        assert dict(got.metadata.user) == {"role": "clerk"}

    @pytest.mark.asyncio
    async def test_changing_read_metadata_does_not_change_the_store(
        self, store: EventStore
    ) -> None:
        await store.append(
            append_request({"s": 0}, [new_event("s", metadata=EventMetadata(user={"n": 1}))])
        )
        [first] = await store.read_stream("s")
        user = first.metadata.user
        if isinstance(user, MutableMapping):  # a read-only mapping is immutable already
            user["n"] = 2
        [again] = await store.read_stream("s")
        assert dict(again.metadata.user) == {"n": 1}
