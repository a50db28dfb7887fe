"""Contract: appending — round trip, atomicity, optimistic checks, positions."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from uuid import UUID

import pytest

from eventcore.errors import (
    ConcurrencyError,
    DuplicateEventId,
    InvalidExpectedVersions,
    VersionConflict,
)
from eventcore.store import EventStore
from eventcore.testing.contract._support import (
    ContractFixtures,
    PeerFactory,
    append_new,
    append_request,
    event_ids,
    is_strictly_increasing,
    new_event,
    positions,
    stream_ids,
    versions,
    whole_log,
)
from eventcore.types import (
    AppendRequest,
    AppendResult,
    EventMetadata,
    NewEvent,
    RecordedEvent,
    StreamId,
)

# Generous: a server-side clock (PostgreSQL now()) may differ a little from ours.
_CLOCK_SLACK = timedelta(seconds=5)

# How long the tailing reader may take to see every event before the test fails.
TAIL_DEADLINE_S = 120.0


class AppendContract(ContractFixtures):
    # -- round trip ------------------------------------------------------------------

    @pytest.mark.asyncio
    async def test_appended_event_round_trips_every_field(self, store: EventStore) -> None:
        metadata = EventMetadata("corr-1", "cause-1", {"user": "ada", "tags": ["a", "b"]})
        sent = new_event("acc-1", "Opened", {"owner": "ada", "limit": 100}, metadata=metadata)
        before = datetime.now(UTC)
        result = await store.append(append_request({"acc-1": 0}, [sent]))
        after = datetime.now(UTC)

        [got] = await store.read_stream("acc-1")
        assert isinstance(got.event_id, UUID)
        assert got.event_id == sent.event_id
        assert isinstance(got.stream_id, StreamId)
        assert got.stream_id == "acc-1"
        assert got.stream_version == 1
        assert got.global_position == result.positions[0]
        assert got.event_type == "Opened"
        assert type(got.payload) is bytes
        assert got.payload == sent.payload
        assert got.metadata.correlation_id == "corr-1"
        assert got.metadata.causation_id == "cause-1"
        assert dict(got.metadata.user) == {"user": "ada", "tags": ["a", "b"]}
        assert got.recorded_at.tzinfo is not None
        assert got.recorded_at.utcoffset() is not None
        assert before - _CLOCK_SLACK <= got.recorded_at <= after + _CLOCK_SLACK

    @pytest.mark.asyncio
    async def test_empty_metadata_round_trips_as_none_and_empty_dict(
        self, store: EventStore
    ) -> None:
        await store.append(append_request({"s": 0}, [new_event("s")]))
        [got] = await store.read_stream("s")
        assert got.metadata.correlation_id is None
        assert got.metadata.causation_id is None
        assert dict(got.metadata.user) == {}

    @pytest.mark.asyncio
    async def test_nested_user_metadata_round_trips(self, store: EventStore) -> None:
        user = {"n": 1, "f": 1.5, "ok": True, "none": None, "deep": {"l": [1, {"x": "ünï"}]}}
        sent = new_event("s", metadata=EventMetadata(user=user))
        await store.append(append_request({"s": 0}, [sent]))
        [got] = await store.read_stream("s")
        assert dict(got.metadata.user) == user

    @pytest.mark.asyncio
    async def test_read_all_returns_the_same_record_as_read_stream(self, store: EventStore) -> None:
        metadata = EventMetadata("c", "k", {"u": 1})
        await store.append(
            append_request({"s": 0}, [new_event("s", "T", {"a": 1}, metadata=metadata)])
        )
        assert await store.read_all() == await store.read_stream("s")

    # -- all or nothing ----------------------------------------------------------------

    @pytest.mark.asyncio
    async def test_conflict_on_written_stream_rejects_whole_multi_stream_batch(
        self, store: EventStore
    ) -> None:
        await append_new(store, "a")
        log_before = await whole_log(store)
        head_before = await store.head_position()
        # The stale stream comes last, so writing while checking would already have
        # written b and c.
        events = [new_event("b"), new_event("c"), new_event("a")]
        with pytest.raises(VersionConflict):
            await store.append(append_request([("b", 0), ("c", 0), ("a", 0)], events))
        assert await store.read_stream("b") == []
        assert await store.read_stream("c") == []
        assert versions(await store.read_stream("a")) == [1]
        assert await whole_log(store) == log_before
        assert await store.head_position() == head_before

    @pytest.mark.asyncio
    async def test_stale_read_only_participant_rejects_whole_append(
        self, store: EventStore
    ) -> None:
        await append_new(store, "read-only")
        log_before = await whole_log(store)
        request = append_request({"written": 0, "read-only": 0}, [new_event("written")])
        with pytest.raises(VersionConflict) as caught:
            await store.append(request)
        assert caught.value.stream_id == "read-only"
        assert await store.read_stream("written") == []
        assert await whole_log(store) == log_before

    @pytest.mark.asyncio
    async def test_current_read_only_participant_allows_append(self, store: EventStore) -> None:
        await append_new(store, "read-only", 2)
        request = append_request({"read-only": 2, "written": 0}, [new_event("written")])
        result = await store.append(request)
        assert dict(result.stream_versions) == {"read-only": 2, "written": 1}
        assert await store.stream_version("read-only") == 2
        assert versions(await store.read_stream("written")) == [1]

    @pytest.mark.asyncio
    async def test_version_conflict_reports_stream_expected_and_actual(
        self, store: EventStore
    ) -> None:
        await append_new(store, "acc-1", 3)
        with pytest.raises(VersionConflict) as caught:
            await store.append(append_request({"acc-1": 1}, [new_event("acc-1")]))
        assert isinstance(caught.value, ConcurrencyError)
        assert (caught.value.stream_id, caught.value.expected, caught.value.actual) == (
            "acc-1",
            1,
            3,
        )

    @pytest.mark.asyncio
    async def test_expected_version_ahead_of_a_missing_stream_conflicts(
        self, store: EventStore
    ) -> None:
        with pytest.raises(VersionConflict) as caught:
            await store.append(append_request({"ghost": 2}, [new_event("ghost")]))
        assert (caught.value.stream_id, caught.value.expected, caught.value.actual) == (
            "ghost",
            2,
            0,
        )
        assert await store.head_position() == 0

    @pytest.mark.asyncio
    async def test_append_without_events_reports_versions_and_writes_nothing(
        self, store: EventStore
    ) -> None:
        await append_new(store, "a")
        head = await store.head_position()
        result = await store.append(append_request({"a": 1, "b": 0}))
        assert result.positions == ()
        assert dict(result.stream_versions) == {"a": 1, "b": 0}
        assert await store.head_position() == head

    @pytest.mark.asyncio
    async def test_append_without_events_still_checks_versions(self, store: EventStore) -> None:
        await append_new(store, "a")
        with pytest.raises(VersionConflict):
            await store.append(append_request({"a": 0}))

    # -- concurrency -------------------------------------------------------------------

    @pytest.mark.asyncio
    async def test_concurrent_appends_at_same_expected_version_have_exactly_one_winner(
        self, store: EventStore
    ) -> None:
        requests = [
            append_request({"race": 0}, [new_event("race", data={"i": i})]) for i in range(20)
        ]
        outcomes = await asyncio.gather(
            *(store.append(r) for r in requests), return_exceptions=True
        )
        await _assert_one_winner(store, requests, outcomes)

    @pytest.mark.asyncio
    async def test_concurrent_appends_through_separate_handles_have_exactly_one_winner(
        self, store: EventStore, open_peer: PeerFactory
    ) -> None:
        handles: list[EventStore] = [store, await open_peer(), await open_peer()]
        requests = [
            append_request({"race": 0}, [new_event("race", data={"i": i})]) for i in range(12)
        ]
        outcomes = await asyncio.gather(
            *(handles[i % 3].append(r) for i, r in enumerate(requests)), return_exceptions=True
        )
        await _assert_one_winner(store, requests, outcomes)

    @pytest.mark.asyncio
    async def test_append_through_one_handle_is_visible_through_another(
        self, store: EventStore, open_peer: PeerFactory
    ) -> None:
        peer: EventStore = await open_peer()
        result = await append_new(peer, "shared", 2)
        assert positions(await store.read_stream("shared")) == list(result.positions)
        assert await store.stream_version("shared") == 2

    # -- request validation ------------------------------------------------------------

    @pytest.mark.asyncio
    async def test_duplicate_expected_versions_for_one_stream_are_rejected(
        self, store: EventStore
    ) -> None:
        with pytest.raises(InvalidExpectedVersions):
            await store.append(append_request([("a", 0), ("a", 0)], [new_event("a")]))
        assert await store.head_position() == 0

    @pytest.mark.asyncio
    async def test_contradictory_expected_versions_for_one_stream_are_rejected(
        self, store: EventStore
    ) -> None:
        with pytest.raises(InvalidExpectedVersions):
            await store.append(append_request([("a", 0), ("a", 1)], [new_event("a")]))
        assert await store.head_position() == 0

    @pytest.mark.asyncio
    async def test_one_stream_named_twice_once_with_padding_is_rejected(
        self, store: EventStore
    ) -> None:
        with pytest.raises(InvalidExpectedVersions):
            await store.append(append_request([("a", 0), (" a ", 0)], [new_event("a")]))
        assert await store.head_position() == 0

    @pytest.mark.asyncio
    async def test_negative_expected_version_is_rejected(self, store: EventStore) -> None:
        with pytest.raises(InvalidExpectedVersions):
            await store.append(append_request({"a": -1}, [new_event("a")]))
        assert await store.head_position() == 0

    @pytest.mark.asyncio
    async def test_event_for_stream_without_expected_version_is_rejected(
        self, store: EventStore
    ) -> None:
        with pytest.raises(InvalidExpectedVersions):
            await store.append(append_request({"a": 0}, [new_event("a"), new_event("b")]))
        assert await store.head_position() == 0

    @pytest.mark.asyncio
    async def test_append_reusing_a_stored_event_id_is_rejected_and_writes_nothing(
        self, store: EventStore
    ) -> None:
        first = new_event("a")
        await store.append(append_request({"a": 0}, [first]))
        log_before = await whole_log(store)
        reused = NewEvent(StreamId("b"), "Happened", b"{}", event_id=first.event_id)
        with pytest.raises(DuplicateEventId, match=str(first.event_id)) as caught:
            await store.append(append_request({"b": 0}, [new_event("b"), reused]))
        assert caught.value.event_ids == (first.event_id,)
        assert await whole_log(store) == log_before

    @pytest.mark.asyncio
    async def test_duplicate_event_id_names_every_reused_id(self, store: EventStore) -> None:
        stored = [new_event("a"), new_event("a"), new_event("a")]
        await store.append(append_request({"a": 0}, stored))
        reused = [
            NewEvent(StreamId("b"), "Happened", b"{}", event_id=e.event_id) for e in stored[1:]
        ]
        with pytest.raises(DuplicateEventId) as caught:
            await store.append(append_request({"b": 0}, [new_event("b"), *reused]))
        assert set(caught.value.event_ids) == {e.event_id for e in stored[1:]}
        assert await store.stream_version("b") == 0

    @pytest.mark.asyncio
    async def test_an_event_id_stored_through_another_handle_is_a_duplicate(
        self, store: EventStore, open_peer: PeerFactory
    ) -> None:
        peer = await open_peer()
        first = new_event("a")
        await peer.append(append_request({"a": 0}, [first]))
        reused = NewEvent(StreamId("b"), "Happened", b"{}", event_id=first.event_id)
        with pytest.raises(DuplicateEventId, match=str(first.event_id)):
            await store.append(append_request({"b": 0}, [reused]))
        assert await store.stream_version("b") == 0
        assert await store.head_position() == 1

    @pytest.mark.asyncio
    async def test_append_repeating_an_event_id_within_itself_is_rejected(
        self, store: EventStore
    ) -> None:
        event = new_event("a")
        with pytest.raises(DuplicateEventId, match=str(event.event_id)) as caught:
            await store.append(append_request({"a": 0}, [event, event]))
        assert caught.value.event_ids == (event.event_id,)
        assert await store.head_position() == 0

    # -- versions and positions --------------------------------------------------------

    @pytest.mark.asyncio
    async def test_append_result_positions_are_strictly_increasing_and_match_read_all(
        self, store: EventStore
    ) -> None:
        first = await store.append(
            append_request({"a": 0, "b": 0}, [new_event("a"), new_event("b"), new_event("a")])
        )
        second = await append_new(store, "b", 2)
        reported = [*first.positions, *second.positions]
        assert len(reported) == 5
        assert is_strictly_increasing(reported)
        assert positions(await whole_log(store)) == reported

    @pytest.mark.asyncio
    async def test_append_result_reports_new_version_of_every_written_stream(
        self, store: EventStore
    ) -> None:
        await append_new(store, "a", 2)
        events = [new_event("a"), new_event("b"), new_event("a")]
        result = await store.append(append_request({"a": 2, "b": 0}, events))
        assert dict(result.stream_versions) == {"a": 4, "b": 1}

    @pytest.mark.asyncio
    async def test_events_of_one_append_are_stored_in_the_given_order(
        self, store: EventStore
    ) -> None:
        events = [new_event(s, data={"i": i}) for i, s in enumerate(["a", "b", "a", "c", "b"])]
        await store.append(append_request({"a": 0, "b": 0, "c": 0}, events))
        log = await whole_log(store)
        assert event_ids(log) == event_ids(events)
        assert versions(log) == [1, 1, 2, 1, 2]

    @pytest.mark.asyncio
    async def test_versions_are_contiguous_across_several_appends(self, store: EventStore) -> None:
        for count in (1, 3, 2, 4):
            await append_new(store, "s", count)
        assert versions(await store.read_stream("s")) == list(range(1, 11))
        assert await store.stream_version("s") == 10

    @pytest.mark.asyncio
    async def test_versions_are_counted_per_stream(self, store: EventStore) -> None:
        await append_new(store, "a", 3)
        await append_new(store, "b", 2)
        assert versions(await store.read_stream("b")) == [1, 2]

    @pytest.mark.asyncio
    async def test_thousand_event_single_append_reads_back_in_order(
        self, store: EventStore
    ) -> None:
        events = [new_event("big", data={"i": i}) for i in range(1000)]
        result = await store.append(append_request({"big": 0}, events))
        got = await store.read_stream("big")
        assert event_ids(got) == event_ids(events)
        assert versions(got) == list(range(1, 1001))
        assert positions(got) == list(result.positions)
        assert is_strictly_increasing(positions(got))

    # -- global order --------------------------------------------------------------------

    @pytest.mark.asyncio
    async def test_global_order_across_streams_follows_append_order(
        self, store: EventStore
    ) -> None:
        for stream in ["b", "a", "c", "a", "b"]:
            await append_new(store, stream)
        assert stream_ids(await whole_log(store)) == ["b", "a", "c", "a", "b"]

    @pytest.mark.asyncio
    async def test_global_order_follows_append_order_across_handles(
        self, store: EventStore, open_peer: PeerFactory
    ) -> None:
        peer: EventStore = await open_peer()
        sent: list[int] = []
        for i in range(6):
            handle = store if i % 2 else peer
            result = await append_new(handle, f"s-{i % 3}")
            sent.extend(result.positions)
        log = await whole_log(store)
        assert stream_ids(log) == ["s-0", "s-1", "s-2", "s-0", "s-1", "s-2"]
        assert positions(log) == sent

    @pytest.mark.asyncio
    async def test_tailing_reader_sees_every_event_while_writers_append(
        self, store: EventStore, open_peer: PeerFactory
    ) -> None:
        writers: list[EventStore] = [store, await open_peer(), await open_peer()]
        done = asyncio.Event()

        async def write(index: int, handle: EventStore) -> None:
            for _ in range(15):
                await append_new(handle, f"w-{index}")
                await asyncio.sleep(0)

        async def tail() -> list[UUID]:
            seen: list[RecordedEvent] = []
            after = 0
            # Bounded by a deadline far beyond what the writers need on a loaded
            # machine, so a stuck cursor fails instead of hanging; a count of reads
            # would run out while slow writers are still committing.
            deadline = asyncio.get_running_loop().time() + TAIL_DEADLINE_S
            while asyncio.get_running_loop().time() < deadline:
                finished = done.is_set()
                page = await store.read_all(after=after, limit=7)
                seen.extend(page)
                if page:
                    after = page[-1].global_position
                elif finished:
                    return event_ids(seen)
                else:
                    await asyncio.sleep(0.001)  # nothing new yet: let the writers run
                await asyncio.sleep(0)
            raise AssertionError(f"the tailing reader never caught up; it saw {len(seen)}")

        reader = asyncio.create_task(tail())
        await asyncio.gather(*(write(i, h) for i, h in enumerate(writers)))
        done.set()
        log = await whole_log(store)
        assert len(log) == 45
        assert await reader == event_ids(log)


async def _assert_one_winner(
    store: EventStore, requests: list[AppendRequest], outcomes: list[AppendResult | BaseException]
) -> None:
    winners = [i for i, o in enumerate(outcomes) if isinstance(o, AppendResult)]
    conflicts = [o for o in outcomes if isinstance(o, VersionConflict)]
    assert len(winners) == 1, outcomes
    assert len(conflicts) == len(requests) - 1, outcomes
    assert all((c.stream_id, c.expected, c.actual) == ("race", 0, 1) for c in conflicts)
    winner_events: tuple[NewEvent, ...] = requests[winners[0]].events
    assert event_ids(await store.read_stream("race")) == event_ids(winner_events)
