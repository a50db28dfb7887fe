"""Contract: the global log — resuming, limits, filters (before the limit), paging."""

from __future__ import annotations

from typing import Any

import pytest

from eventcore.errors import ValidationError
from eventcore.store import EventStore
from eventcore.testing.contract._support import (
    ContractFixtures,
    append_new,
    append_one_each,
    append_request,
    collect,
    event_ids,
    new_event,
    positions,
    stream_ids,
    whole_log,
)

INVALID_FILTERS: dict[str, dict[str, Any]] = {
    "empty-event-types": {"event_types": []},
    "str-event-types": {"event_types": "Opened"},
    "non-str-event-type": {"event_types": [1]},
    "empty-event-type": {"event_types": [""]},
    "empty-prefix": {"stream_prefix": ""},
    "non-str-prefix": {"stream_prefix": 5},
    "empty-pattern": {"stream_pattern": ""},
    "non-str-pattern": {"stream_pattern": 5},
}

# Characters that SQL LIKE or a regex would treat specially must match themselves.
_LITERAL_PATTERN_CASES = {
    "underscore": ("a_?", ["a_1"]),
    "percent": ("a%?", ["a%1"]),
    "backslash": ("a\\?", ["a\\1"]),
    "dot": ("a.?", ["a.1"]),
}


async def _matching(store: EventStore, **filters: Any) -> list[str]:
    return stream_ids(await store.read_all(**filters))


async def _noise_then(store: EventStore, noise: int, stream: str, event_type: str) -> list[Any]:
    """``noise`` events that no filter below matches, then three that do."""
    events = [new_event("noise", "Noise", {"i": i}) for i in range(noise)]
    wanted = [new_event(stream, event_type, {"i": i}) for i in range(3)]
    await store.append(append_request({"noise": 0, stream: 0}, [*events, *wanted]))
    return event_ids(wanted)


class LogReadContract(ContractFixtures):
    # -- position and limit ------------------------------------------------------------

    @pytest.mark.asyncio
    async def test_read_all_of_an_empty_store_is_empty(self, store: EventStore) -> None:
        assert await store.read_all() == []

    @pytest.mark.asyncio
    async def test_read_all_after_a_position_resumes_exactly_after_it(
        self, store: EventStore
    ) -> None:
        for stream, count in [("a", 2), ("b", 1), ("a", 3)]:
            await append_new(store, stream, count)
        log = await whole_log(store)
        for i, event in enumerate(log):
            tail = await store.read_all(after=event.global_position)
            assert event_ids(tail) == event_ids(log[i + 1 :]), f"after={event.global_position}"

    @pytest.mark.asyncio
    async def test_read_all_after_the_head_is_empty(self, store: EventStore) -> None:
        await append_new(store, "a", 3)
        assert await store.read_all(after=await store.head_position()) == []

    @pytest.mark.asyncio
    async def test_read_all_limit_caps_the_page(self, store: EventStore) -> None:
        result = await append_new(store, "a", 5)
        assert positions(await store.read_all(limit=2)) == list(result.positions[:2])

    @pytest.mark.asyncio
    async def test_read_all_pages_with_after_and_limit_cover_the_log(
        self, store: EventStore
    ) -> None:
        for stream in "abcabcabca":
            await append_new(store, stream)
        log, after, paged = await whole_log(store), 0, []
        for _ in range(10):  # four pages are needed; more means the cursor is stuck
            page = await store.read_all(after=after, limit=3)
            if not page:
                break
            paged.extend(page)
            after = page[-1].global_position
        assert event_ids(paged) == event_ids(log)
        assert len(paged) == 10

    @pytest.mark.asyncio
    @pytest.mark.parametrize("limit", [0, -1])
    async def test_read_all_rejects_limit_below_one(self, store: EventStore, limit: int) -> None:
        with pytest.raises(ValidationError):
            await store.read_all(limit=limit)

    @pytest.mark.asyncio
    async def test_read_all_rejects_a_negative_position(self, store: EventStore) -> None:
        with pytest.raises(ValidationError):
            await store.read_all(after=-1)

    # -- filters come before the limit -------------------------------------------------

    @pytest.mark.asyncio
    async def test_stream_prefix_filter_is_applied_before_the_limit(
        self, store: EventStore
    ) -> None:
        wanted = await _noise_then(store, 30, "acc-1", "Happened")
        got = await store.read_all(limit=2, stream_prefix="acc-")
        assert event_ids(got) == wanted[:2]

    @pytest.mark.asyncio
    async def test_stream_pattern_filter_is_applied_before_the_limit(
        self, store: EventStore
    ) -> None:
        wanted = await _noise_then(store, 30, "acc-1", "Happened")
        got = await store.read_all(limit=2, stream_pattern="acc-*")
        assert event_ids(got) == wanted[:2]

    @pytest.mark.asyncio
    async def test_event_types_filter_is_applied_before_the_limit(self, store: EventStore) -> None:
        wanted = await _noise_then(store, 30, "acc-1", "Wanted")
        got = await store.read_all(limit=2, event_types=["Wanted"])
        assert event_ids(got) == wanted[:2]

    @pytest.mark.asyncio
    async def test_filtered_read_all_resumes_after_a_position(self, store: EventStore) -> None:
        wanted = await _noise_then(store, 10, "acc-1", "Happened")
        [first] = await store.read_all(limit=1, stream_prefix="acc-")
        got = await store.read_all(after=first.global_position, stream_prefix="acc-")
        assert event_ids(got) == wanted[1:]

    # -- stream prefix -----------------------------------------------------------------

    @pytest.mark.asyncio
    async def test_stream_prefix_matches_only_streams_starting_with_it(
        self, store: EventStore
    ) -> None:
        await append_one_each(store, ["acc-1", "xacc-1", "ac-1", "acc", "acc-22"])
        assert await _matching(store, stream_prefix="acc-") == ["acc-1", "acc-22"]

    @pytest.mark.asyncio
    async def test_stream_prefix_underscore_is_a_literal_character(self, store: EventStore) -> None:
        await append_one_each(store, ["ab-1", "a_-1", "a_", "a-_"])
        assert await _matching(store, stream_prefix="a_") == ["a_-1", "a_"]

    @pytest.mark.asyncio
    async def test_stream_prefix_percent_is_a_literal_character(self, store: EventStore) -> None:
        await append_one_each(store, ["1000", "100%", "100", "100%-x", "1001%"])
        assert await _matching(store, stream_prefix="100%") == ["100%", "100%-x"]

    @pytest.mark.asyncio
    async def test_stream_prefix_backslash_is_a_literal_character(self, store: EventStore) -> None:
        await append_one_each(store, ["a\\b", "a%", "ab", "a\\%", "a\\\\"])
        assert await _matching(store, stream_prefix="a\\") == ["a\\b", "a\\%", "a\\\\"]

    @pytest.mark.asyncio
    async def test_stream_prefix_is_case_sensitive(self, store: EventStore) -> None:
        await append_one_each(store, ["acc-1", "Acc-2", "ACC-3", "ünï-1", "Ünï-2"])
        assert await _matching(store, stream_prefix="Acc") == ["Acc-2"]
        assert await _matching(store, stream_prefix="Ünï") == ["Ünï-2"]

    # -- stream pattern ----------------------------------------------------------------

    @pytest.mark.asyncio
    async def test_stream_pattern_star_matches_any_run_of_characters(
        self, store: EventStore
    ) -> None:
        await append_one_each(store, ["acc-1", "acc", "acc-12", "xacc-1", "acc-", "acc-1-x"])
        got = await _matching(store, stream_pattern="acc-*")
        assert got == ["acc-1", "acc-12", "acc-", "acc-1-x"]

    @pytest.mark.asyncio
    async def test_stream_pattern_question_mark_matches_exactly_one_character(
        self, store: EventStore
    ) -> None:
        await append_one_each(store, ["acc-1", "acc-12", "acc-", "acc-x", "acc-流"])
        assert await _matching(store, stream_pattern="acc-?") == ["acc-1", "acc-x", "acc-流"]

    @pytest.mark.asyncio
    async def test_stream_pattern_set_matches_one_listed_character(self, store: EventStore) -> None:
        await append_one_each(store, ["a-1", "b-1", "c-1", "ab-1"])
        assert await _matching(store, stream_pattern="[ab]-1") == ["a-1", "b-1"]

    @pytest.mark.asyncio
    async def test_stream_pattern_negated_set_matches_one_unlisted_character(
        self, store: EventStore
    ) -> None:
        await append_one_each(store, ["a-1", "b-1", "c-1", "ab-1"])
        assert await _matching(store, stream_pattern="[!a]-1") == ["b-1", "c-1"]

    @pytest.mark.asyncio
    async def test_stream_pattern_must_match_the_whole_stream_id(self, store: EventStore) -> None:
        await append_one_each(store, ["acc-1", "acc-10", "xacc-1"])
        assert await _matching(store, stream_pattern="acc-1") == ["acc-1"]

    @pytest.mark.asyncio
    async def test_stream_pattern_is_case_sensitive(self, store: EventStore) -> None:
        await append_one_each(store, ["acc-1", "ACC-2", "Acc-3"])
        assert await _matching(store, stream_pattern="ACC-*") == ["ACC-2"]

    @pytest.mark.asyncio
    @pytest.mark.parametrize(
        ("pattern", "expected"),
        list(_LITERAL_PATTERN_CASES.values()),
        ids=list(_LITERAL_PATTERN_CASES),
    )
    async def test_stream_pattern_treats_other_characters_literally(
        self, store: EventStore, pattern: str, expected: list[str]
    ) -> None:
        await append_one_each(store, ["a_1", "ab1", "a%1", "a\\1", "a.1", "a11"])
        assert await _matching(store, stream_pattern=pattern) == expected

    # -- event types and combinations --------------------------------------------------

    @pytest.mark.asyncio
    async def test_event_types_filter_keeps_only_listed_types(self, store: EventStore) -> None:
        types = ["Opened", "Deposited", "Closed", "Deposited", "deposited"]
        events = [new_event("acc-1", t) for t in types]
        await store.append(append_request({"acc-1": 0}, events))
        got = await store.read_all(event_types={"Deposited", "Closed"})
        assert [e.event_type for e in got] == ["Deposited", "Closed", "Deposited"]

    @pytest.mark.asyncio
    async def test_prefix_and_event_types_filters_must_both_hold(self, store: EventStore) -> None:
        await self._seed_accounts(store)
        got = await store.read_all(stream_prefix="acc-", event_types=["Deposited"])
        assert [(e.stream_id, e.event_type) for e in got] == [
            ("acc-1", "Deposited"),
            ("acc-2", "Deposited"),
        ]

    @pytest.mark.asyncio
    async def test_pattern_and_event_types_filters_must_both_hold(self, store: EventStore) -> None:
        await self._seed_accounts(store)
        got = await store.read_all(stream_pattern="*-1", event_types=["Deposited"])
        assert [(e.stream_id, e.event_type) for e in got] == [
            ("acc-1", "Deposited"),
            ("bank-1", "Deposited"),
        ]

    @pytest.mark.asyncio
    async def test_prefix_and_pattern_filters_must_both_hold(self, store: EventStore) -> None:
        await self._seed_accounts(store)
        got = await store.read_all(stream_prefix="acc-", stream_pattern="*-2")
        assert [(e.stream_id, e.event_type) for e in got] == [("acc-2", "Deposited")]

    @staticmethod
    async def _seed_accounts(store: EventStore) -> None:
        pairs = [
            ("acc-1", "Opened"),
            ("acc-1", "Deposited"),
            ("bank-1", "Deposited"),
            ("acc-2", "Deposited"),
            ("bank-1", "Opened"),
        ]
        events = [new_event(s, t) for s, t in pairs]
        await store.append(append_request({"acc-1": 0, "acc-2": 0, "bank-1": 0}, events))

    @pytest.mark.asyncio
    @pytest.mark.parametrize("filters", list(INVALID_FILTERS.values()), ids=list(INVALID_FILTERS))
    async def test_invalid_filter_is_rejected_by_read_all(
        self, store: EventStore, filters: dict[str, Any]
    ) -> None:
        with pytest.raises(ValidationError):
            await store.read_all(**filters)

    @pytest.mark.asyncio
    @pytest.mark.parametrize("filters", list(INVALID_FILTERS.values()), ids=list(INVALID_FILTERS))
    async def test_invalid_filter_is_rejected_by_iter_all(
        self, store: EventStore, filters: dict[str, Any]
    ) -> None:
        with pytest.raises(ValidationError):
            await collect(store.iter_all(**filters))

    # -- iter_all ----------------------------------------------------------------------

    @pytest.mark.asyncio
    async def test_iter_all_walks_the_whole_log_across_pages(self, store: EventStore) -> None:
        for stream in "abcabcabca":
            await append_new(store, stream)
        got = await collect(store.iter_all(page_size=3))
        assert event_ids(got) == event_ids(await whole_log(store))
        assert len(got) == 10

    @pytest.mark.asyncio
    async def test_iter_all_walks_a_log_whose_length_is_a_multiple_of_the_page_size(
        self, store: EventStore
    ) -> None:
        await append_new(store, "a", 9)
        got = await collect(store.iter_all(page_size=3))
        assert event_ids(got) == event_ids(await whole_log(store))
        assert len(got) == 9

    @pytest.mark.asyncio
    async def test_iter_all_starts_after_a_position(self, store: EventStore) -> None:
        await append_new(store, "a", 4)
        later = await append_new(store, "b", 5)
        got = await collect(store.iter_all(after=later.positions[0] - 1, page_size=2))
        assert positions(got) == list(later.positions)

    @pytest.mark.asyncio
    async def test_iter_all_applies_filters_across_pages(self, store: EventStore) -> None:
        streams = [f"acc-{i}" if i % 7 == 3 else f"other-{i}" for i in range(30)]
        events = [new_event(s, "Deposited" if i % 2 else "Opened") for i, s in enumerate(streams)]
        await store.append(append_request({s: 0 for s in streams}, events))
        got = await collect(store.iter_all(page_size=2, stream_prefix="acc-"))
        assert stream_ids(got) == ["acc-3", "acc-10", "acc-17", "acc-24"]
        typed = await collect(
            store.iter_all(page_size=2, stream_pattern="acc-*", event_types=["Deposited"])
        )
        assert stream_ids(typed) == ["acc-3", "acc-17"]

    @pytest.mark.asyncio
    async def test_iter_all_rejects_page_size_zero(self, store: EventStore) -> None:
        with pytest.raises(ValidationError):
            await collect(store.iter_all(page_size=0))
