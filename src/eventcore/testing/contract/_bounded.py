"""Contract: bounded reads — ``read_all``/``iter_all`` up to ``stop``, and the tail
of a stream (``read_stream_tail``)."""

from __future__ import annotations

import pytest

from eventcore.errors import ValidationError
from eventcore.store import EventStore
from eventcore.testing.contract._support import (
    ContractFixtures,
    append_new,
    collect,
    positions,
    stream_ids,
    versions,
    whole_log,
)

_BAD_POSITIONS: dict[str, object] = {
    "negative": -1,
    "over-64-bits": 2**63,
    "str": "3",
    "float": 3.0,
    "bool": True,
}

_BAD_COUNTS: dict[str, object] = {
    "zero": 0,
    "negative": -1,
    "over-64-bits": 2**63,
    "str": "2",
    "float": 2.0,
    "bool": True,
}


def _by_name(cases: dict[str, object]) -> pytest.MarkDecorator:
    return pytest.mark.parametrize("value", list(cases.values()), ids=list(cases))


async def _one_at_a_time(store: EventStore, streams: list[str]) -> list[int]:
    """One append per stream id, in order; the positions they got."""
    return [(await append_new(store, s)).positions[0] for s in streams]


class BoundedReadContract(ContractFixtures):
    # -- read_all(stop=...) ------------------------------------------------------------

    @pytest.mark.asyncio
    async def test_read_all_stop_is_the_last_position_returned(self, store: EventStore) -> None:
        result = await append_new(store, "s", 5)
        got = await store.read_all(stop=result.positions[2])
        assert positions(got) == list(result.positions[:3])

    @pytest.mark.asyncio
    async def test_read_all_between_after_and_stop(self, store: EventStore) -> None:
        result = await append_new(store, "s", 6)
        got = await store.read_all(after=result.positions[1], stop=result.positions[4])
        assert positions(got) == list(result.positions[2:5])

    @pytest.mark.asyncio
    async def test_read_all_stop_beyond_the_head_reads_to_the_head(self, store: EventStore) -> None:
        await append_new(store, "s", 3)
        head = await store.head_position()
        assert await store.read_all(stop=head + 100) == await whole_log(store)
        assert await store.read_all(stop=2**63 - 1) == await whole_log(store)

    @pytest.mark.asyncio
    async def test_read_all_stop_at_or_below_after_reads_nothing(self, store: EventStore) -> None:
        result = await append_new(store, "s", 5)
        middle = result.positions[2]
        assert await store.read_all(after=middle, stop=middle) == []
        assert await store.read_all(after=middle, stop=middle - 1) == []
        assert await store.read_all(stop=0) == []

    @pytest.mark.asyncio
    async def test_read_all_applies_stop_and_filters_before_the_limit(
        self, store: EventStore
    ) -> None:
        at = await _one_at_a_time(
            store, ["acc-1", "noise-1", "noise-2", "acc-2", "noise-3", "acc-3", "acc-4"]
        )
        # the limit counts matching events only, and only those up to stop
        page = await store.read_all(stream_prefix="acc-", limit=2, stop=at[5])
        assert stream_ids(page) == ["acc-1", "acc-2"]
        rest = await store.read_all(after=at[3], stream_prefix="acc-", limit=2, stop=at[5])
        assert stream_ids(rest) == ["acc-3"]
        by_pattern = await store.read_all(stream_pattern="acc-?", limit=10, stop=at[4])
        assert stream_ids(by_pattern) == ["acc-1", "acc-2"]

    @pytest.mark.asyncio
    async def test_read_all_stop_applies_with_event_types(self, store: EventStore) -> None:
        first = await append_new(store, "a", 2, event_type="Wanted")
        await append_new(store, "b", 2, event_type="Other")
        await append_new(store, "a", 2, event_type="Wanted")
        got = await store.read_all(event_types=["Wanted"], stop=first.positions[-1] + 2)
        assert positions(got) == list(first.positions)

    @pytest.mark.asyncio
    @_by_name(_BAD_POSITIONS)
    async def test_read_all_rejects_a_bad_stop_naming_it(
        self, store: EventStore, value: object
    ) -> None:
        with pytest.raises(ValidationError, match=rf"stop.*{value!r}"):
            await store.read_all(stop=value)  # type: ignore[arg-type]

    # -- iter_all(stop=...) ------------------------------------------------------------

    @pytest.mark.asyncio
    @pytest.mark.parametrize("stop_index", [4, 5], ids=["mid-page", "page-end"])
    async def test_iter_all_stops_at_a_position_across_pages(
        self, store: EventStore, stop_index: int
    ) -> None:
        result = await append_new(store, "s", 10)
        stop = result.positions[stop_index]
        got = await collect(store.iter_all(page_size=3, stop=stop))
        assert positions(got) == list(result.positions[: stop_index + 1])

    @pytest.mark.asyncio
    async def test_iter_all_stops_at_a_position_with_filters(self, store: EventStore) -> None:
        at = await _one_at_a_time(store, ["a-1", "b-1", "a-2", "a-3", "b-2", "a-4", "a-5"])
        got = await collect(store.iter_all(page_size=2, stream_prefix="a-", stop=at[5]))
        assert stream_ids(got) == ["a-1", "a-2", "a-3", "a-4"]

    @pytest.mark.asyncio
    async def test_iter_all_stop_beyond_the_head_walks_to_the_head(self, store: EventStore) -> None:
        await append_new(store, "s", 4)
        got = await collect(store.iter_all(page_size=2, stop=2**63 - 1))
        assert got == await whole_log(store)

    @pytest.mark.asyncio
    @_by_name(_BAD_POSITIONS)
    async def test_iter_all_rejects_a_bad_stop_naming_it(
        self, store: EventStore, value: object
    ) -> None:
        with pytest.raises(ValidationError, match=rf"stop.*{value!r}"):
            await collect(store.iter_all(stop=value))  # type: ignore[arg-type]

    # -- read_stream_tail --------------------------------------------------------------

    @pytest.mark.asyncio
    async def test_read_stream_tail_is_the_last_event_by_default(self, store: EventStore) -> None:
        await append_new(store, "s", 5)
        [last] = await store.read_stream_tail("s")
        assert last == (await store.read_stream("s"))[-1]

    @pytest.mark.asyncio
    async def test_read_stream_tail_returns_the_last_events_oldest_first(
        self, store: EventStore
    ) -> None:
        await append_new(store, "s", 5)
        got = await store.read_stream_tail("s", count=3)
        assert versions(got) == [3, 4, 5]
        assert got == (await store.read_stream("s"))[2:]

    @pytest.mark.asyncio
    async def test_read_stream_tail_of_a_missing_stream_is_empty(self, store: EventStore) -> None:
        await append_new(store, "present")
        assert await store.read_stream_tail("absent") == []
        assert await store.read_stream_tail("absent", count=10) == []

    @pytest.mark.asyncio
    async def test_read_stream_tail_with_a_count_above_the_length_is_the_whole_stream(
        self, store: EventStore
    ) -> None:
        await append_new(store, "s", 3)
        assert await store.read_stream_tail("s", count=4) == await store.read_stream("s")
        assert await store.read_stream_tail("s", count=2**63 - 1) == await store.read_stream("s")

    @pytest.mark.asyncio
    async def test_read_stream_tail_reads_only_its_own_stream(self, store: EventStore) -> None:
        await append_new(store, "a", 2)
        await append_new(store, "a-b", 2)
        await append_new(store, "b", 1)
        await append_new(store, "a", 1)
        await append_new(store, "a-b", 1)
        got = await store.read_stream_tail("a", count=2)
        assert stream_ids(got) == ["a", "a"]
        assert versions(got) == [2, 3]

    @pytest.mark.asyncio
    @_by_name(_BAD_COUNTS)
    async def test_read_stream_tail_rejects_a_bad_count_naming_it(
        self, store: EventStore, value: object
    ) -> None:
        with pytest.raises(ValidationError, match=rf"count.*{value!r}"):
            await store.read_stream_tail("s", count=value)  # type: ignore[arg-type]

    @pytest.mark.asyncio
    async def test_read_stream_tail_rejects_an_invalid_stream_id(self, store: EventStore) -> None:
        with pytest.raises(ValidationError, match="acc-\\*"):
            await store.read_stream_tail("acc-*")
