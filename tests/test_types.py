import dataclasses
import os
import pickle
import time
import uuid
from dataclasses import FrozenInstanceError
from datetime import UTC, datetime

import pytest

from eventcore import EventMetadata, InvalidExpectedVersions, InvalidStreamId, StreamId
from eventcore.errors import ValidationError
from eventcore.types import (
    AppendRequest,
    NewEvent,
    RecordedEvent,
    check_limit,
    check_version,
    new_correlation_id,
    new_event_id,
    trusted_metadata,
    trusted_recorded_event,
)


def _event(stream: str) -> NewEvent:
    return NewEvent(StreamId(stream), "t", b"{}")


def test_stream_id_is_trimmed_and_behaves_as_str() -> None:
    sid = StreamId("  account-1 ")
    assert sid == "account-1"
    assert isinstance(sid, str)
    assert {sid: 1}[StreamId("account-1")] == 1
    assert {str(sid): 1}["account-1"] == 1


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("x" * 256, "256 characters"),
        ("acc-*", "glob"),
        ("acc-?", "glob"),
        ("acc-[1]", "glob"),
        ("acc]", "glob"),
        ("acc\x00", "NUL"),
        ("acc\ud800", "lone surrogate"),
        ("\udfff", "lone surrogate"),
    ],
)
def test_invalid_stream_id_is_rejected_with_the_offending_value(raw: str, reason: str) -> None:
    with pytest.raises(InvalidStreamId, match=reason) as caught:
        StreamId(raw)
    assert caught.value.value == raw


def test_non_str_stream_id_is_rejected() -> None:
    with pytest.raises(InvalidStreamId, match="must be a str"):
        StreamId(42)  # type: ignore[arg-type]


def test_stream_id_of_255_characters_is_accepted() -> None:
    assert len(StreamId("é" * 255)) == 255


@pytest.mark.parametrize("raw", ["konto-ü", "账户-1", "acc-\U0001f600", "tab\there"])
def test_stream_ids_in_any_script_are_accepted(raw: str) -> None:
    assert StreamId(raw) == raw


def test_invalid_stream_id_is_also_a_value_error() -> None:
    with pytest.raises(ValueError, match="invalid stream id"):
        StreamId("")


def test_event_ids_are_version_7_uuids_and_unique() -> None:
    ids = [new_event_id() for _ in range(1000)]
    assert len(set(ids)) == 1000
    assert all(i.version == 7 and i.variant == uuid.RFC_4122 for i in ids)


def test_append_request_keeps_expectations_in_order() -> None:
    request = AppendRequest.create({"b": 1, "a": 0}, [_event("a")])
    assert request.expected == (("b", 1), ("a", 0))


def test_duplicate_expected_version_is_rejected() -> None:
    with pytest.raises(InvalidExpectedVersions, match="duplicate"):
        AppendRequest.create([("a", 1), ("a", 1)])


def test_contradictory_expected_versions_are_rejected() -> None:
    with pytest.raises(InvalidExpectedVersions, match=r"contradictory.*'a': 1 and 2"):
        AppendRequest.create([("a", 1), (" a ", 2)])


@pytest.mark.parametrize("version", [-1, 1.0, True, "1", None, 2**63])
def test_expected_version_must_be_a_non_negative_int(version: object) -> None:
    with pytest.raises(ValidationError, match=r"int from 0 to 2\*\*63-1"):
        AppendRequest.create([("a", version)])  # type: ignore[list-item]


def test_event_for_stream_without_expectation_is_rejected() -> None:
    with pytest.raises(InvalidExpectedVersions, match="'b'"):
        AppendRequest.create({"a": 0}, [_event("b")])


def test_append_request_rejects_things_that_are_not_new_events() -> None:
    with pytest.raises(ValidationError, match="NewEvent"):
        AppendRequest.create({"a": 0}, ["not an event"])  # type: ignore[list-item]


def test_version_and_limit_checks() -> None:
    assert check_version(0) == 0
    assert check_limit(None) is None
    assert check_limit(5) == 5
    with pytest.raises(ValidationError):
        check_limit(0)
    with pytest.raises(ValidationError):
        check_version(-3)


@pytest.mark.parametrize(
    ("metadata", "message"),
    [
        (EventMetadata(correlation_id=7), "correlation_id must be a str or None, got 7"),  # type: ignore[arg-type]
        (EventMetadata(causation_id=b"x"), "causation_id must be a str or None"),  # type: ignore[arg-type]
        (EventMetadata(user=[1]), "user must be a mapping"),  # type: ignore[arg-type]
        ("not metadata", "must be an EventMetadata"),
    ],
)
def test_malformed_metadata_is_refused_before_anything_is_stored(
    metadata: object, message: str
) -> None:
    event = NewEvent(StreamId("a"), "t", b"{}", metadata)  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match=message):
        AppendRequest.create({"a": 0}, [event])


def test_event_ids_behave_like_ids_built_by_the_uuid_module() -> None:
    made = new_event_id()
    rebuilt = uuid.UUID(str(made))
    assert made == rebuilt
    assert hash(made) == hash(rebuilt)
    assert pickle.loads(pickle.dumps(made)) == made
    assert made.is_safe is uuid.SafeUUID.unknown


def test_correlation_ids_are_the_text_of_version_7_uuids_and_unique() -> None:
    ids = [new_correlation_id() for _ in range(1000)]
    assert len(set(ids)) == 1000
    for text in ids[:10]:
        parsed = uuid.UUID(text)
        assert str(parsed) == text
        assert parsed.version == 7
        assert parsed.variant == uuid.RFC_4122


def test_a_new_event_gets_a_fresh_id_unless_given_one() -> None:
    made = [NewEvent(StreamId("a"), "t", b"{}") for _ in range(3)]
    assert len({event.event_id for event in made}) == 3
    assert all(event.event_id.version == 7 for event in made)
    assert NewEvent(StreamId("a"), "t", b"{}", event_id=None).event_id.version == 7
    given = uuid.uuid4()
    event = NewEvent(stream_id=StreamId("a"), event_type="t", payload=b"{}", event_id=given)
    assert (event.event_id, event.metadata) == (given, EventMetadata())
    assert dataclasses.replace(event, payload=b"[]").event_id == given
    assert pickle.loads(pickle.dumps(event)) == event
    with pytest.raises(dataclasses.FrozenInstanceError):
        event.payload = b"[]"  # type: ignore[misc]


def test_trusted_builders_make_what_the_constructors_make() -> None:
    metadata = trusted_metadata("c", None, {"u": 1})
    assert metadata == EventMetadata("c", None, {"u": 1})
    assert repr(metadata) == repr(EventMetadata("c", None, {"u": 1}))
    assert pickle.loads(pickle.dumps(metadata)) == metadata
    event_id = new_event_id()
    at = datetime.now(UTC)
    fields = (event_id, StreamId("a"), 1, 7, "t", b"{}", metadata, at)
    recorded = trusted_recorded_event(*fields)
    assert recorded == RecordedEvent(*fields)
    assert pickle.loads(pickle.dumps(recorded)) == recorded
    with pytest.raises(FrozenInstanceError):
        recorded.stream_version = 2  # type: ignore[misc]


def test_stream_ids_validated_again_come_out_the_same() -> None:
    first = [StreamId(f"  acc-{i} ") for i in range(5000)]  # past the memo's bound
    again = [StreamId(f"  acc-{i} ") for i in range(5000)]
    assert first == again == [f"acc-{i}" for i in range(5000)]
    assert all(type(sid) is StreamId for sid in again)
    with pytest.raises(InvalidStreamId):
        StreamId("acc-*")
    with pytest.raises(InvalidStreamId):
        StreamId("acc-*")  # a refused id is never remembered


def test_ids_carry_the_millisecond_they_were_made_in() -> None:
    # Across many milliseconds: a correlation id's text is formatted in part once
    # per millisecond, and must never carry an earlier one.
    deadline = time.time_ns() + 30_000_000
    while time.time_ns() < deadline:
        before = time.time_ns() // 1_000_000
        made = (uuid.UUID(new_correlation_id()), new_event_id())
        after = time.time_ns() // 1_000_000
        for made_id in made:
            assert before <= made_id.int >> 80 <= after
            assert made_id.version == 7
            assert made_id.variant == uuid.RFC_4122


def test_ids_made_one_after_another_sort_in_order_within_a_millisecond() -> None:
    ids = [new_event_id() for _ in range(200)] + [uuid.UUID(new_correlation_id())]
    same_ms = [i for i in ids if i.int >> 80 == ids[-1].int >> 80]
    assert same_ms == sorted(same_ms)


def test_a_forked_child_draws_ids_of_its_own() -> None:
    # Without a fresh draw the child would go on from the parent's counter and
    # make the very ids the parent makes next.
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        os.write(write, f"{new_event_id()} {new_correlation_id()}".encode())
        os._exit(0)
    parents = [new_event_id(), uuid.UUID(new_correlation_id())]
    os.waitpid(pid, 0)
    childs = [uuid.UUID(text) for text in os.read(read, 200).decode().split()]
    os.close(read)
    os.close(write)
    random_bits = (1 << 76) - 1  # rand_a, the variant and rand_b
    for parent, child in zip(parents, childs, strict=True):
        assert child.version == 7
        assert parent.int & random_bits != child.int & random_bits
