import dataclasses
import enum
import logging
import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, ClassVar

import msgspec
import pydantic
import pytest

from eventcore import (
    Codec,
    Command,
    DeserializationError,
    EncodingError,
    EventMetadata,
    RecordedEvent,
    StreamId,
    UnknownEventType,
    ValidationError,
    execute,
)
from eventcore.codec import decode_metadata, default_codec, encode_metadata, json_encode
from eventcore.store import EventStore, SnapshotStore
from eventcore.types import AppendRequest, NewEvent, new_event_id


@dataclass(frozen=True)
class Opened:
    owner: str
    limit: Decimal
    at: datetime


class Renamed(msgspec.Struct, frozen=True):
    name: str
    tags: list[str]


class Closed(pydantic.BaseModel):
    reason: str
    final_balance: int


@pytest.fixture
def codec() -> Codec:
    codec = Codec()
    codec.add(Opened, "acct.Opened")
    codec.add(Renamed, "acct.Renamed")
    codec.add(Closed, "acct.Closed")
    return codec


def _record(
    event_type: str, payload: bytes, stream: str = "acc-1", version: int = 3
) -> RecordedEvent:
    return RecordedEvent(
        new_event_id(),
        StreamId(stream),
        version,
        10,
        event_type,
        payload,
        EventMetadata(),
        datetime.now(UTC),
    )


@pytest.mark.parametrize(
    "event",
    [
        Opened("ann", Decimal("10.50"), datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)),
        Renamed("savings", ["a", "b"]),
        Closed(reason="moved", final_balance=0),
    ],
)
def test_dataclass_struct_and_pydantic_events_round_trip(codec: Codec, event: object) -> None:
    name, payload = codec.encode(event)
    assert codec.decode(_record(name, payload)) == event


def test_type_name_is_stored_not_the_import_path(codec: Codec) -> None:
    name, payload = codec.encode(Renamed("x", []))
    assert name == "acct.Renamed"
    assert b"test_codec" not in payload


def test_decorator_registers_under_the_given_name() -> None:
    codec = Codec()

    @codec.register("thing.Happened")
    @dataclass
    class Happened:
        n: int

    assert codec.type_name(Happened) == "thing.Happened"
    assert codec.type_names == {"thing.Happened"}


def test_unregistered_event_cannot_be_encoded(codec: Codec) -> None:
    @dataclass
    class Stray:
        n: int

    with pytest.raises(EncodingError, match="Stray is not a registered event class"):
        codec.encode(Stray(1))


def test_unencodable_payload_raises_encoding_error_naming_the_type(codec: Codec) -> None:
    with pytest.raises(EncodingError, match=r"acct.Renamed"):
        codec.encode(Renamed("x", [object()]))  # type: ignore[list-item]


def test_unknown_type_name_names_stream_version_and_type(codec: Codec) -> None:
    with pytest.raises(UnknownEventType, match=r"'acct.Gone'.*'acc-7'.*version 4"):
        codec.decode(_record("acct.Gone", b"{}", "acc-7", 4))


@pytest.mark.parametrize(
    ("event_type", "payload"),
    [
        ("acct.Renamed", b"not json"),
        ("acct.Renamed", b'{"name": 5, "tags": []}'),
        ("acct.Opened", b'{"owner": "x"}'),
        ("acct.Closed", b'{"reason": "x"}'),
    ],
)
def test_undecodable_payload_names_stream_version_and_type(
    codec: Codec, event_type: str, payload: bytes
) -> None:
    with pytest.raises(DeserializationError) as caught:
        codec.decode(_record(event_type, payload, "acc-9", 12))
    error = caught.value
    assert (error.stream_id, error.stream_version, error.event_type) == ("acc-9", 12, event_type)
    assert "'acc-9'" in str(error)
    assert event_type in str(error)


def test_a_name_cannot_be_reused_for_another_class(codec: Codec) -> None:
    @dataclass
    class Other:
        pass

    with pytest.raises(ValidationError, match="already registered for Opened"):
        codec.add(Other, "acct.Opened")


def test_a_class_cannot_have_two_names(codec: Codec) -> None:
    with pytest.raises(ValidationError, match=r"already registered as 'acct.Opened'"):
        codec.add(Opened, "acct.Opened.v2")


def test_registering_the_same_pair_twice_is_harmless(codec: Codec) -> None:
    codec.add(Opened, "acct.Opened")
    assert codec.type_name(Opened) == "acct.Opened"


@pytest.mark.parametrize("name", ["", "  ", " padded", 7, "x" * 201, "a\x00b", "a\ud800"])
def test_bad_type_names_are_rejected(name: object) -> None:
    with pytest.raises(ValidationError, match="type name"):
        Codec().register(name)  # type: ignore[arg-type]


def test_plain_classes_cannot_be_registered() -> None:
    class Plain:
        pass

    with pytest.raises(ValidationError, match="must be dataclasses"):
        Codec().add(Plain, "plain")


def test_metadata_round_trips() -> None:
    metadata = EventMetadata("corr", "cause", {"user": "ann", "n": [1, 2]})
    assert decode_metadata(encode_metadata(metadata)) == metadata


def test_metadata_that_is_not_json_is_an_encoding_error() -> None:
    with pytest.raises(EncodingError, match="metadata"):
        encode_metadata(EventMetadata(user={"when": object()}))


def test_stream_ids_inside_events_and_metadata_encode_as_plain_strings(codec: Codec) -> None:
    _, payload = codec.encode(Renamed(StreamId("acc-1"), [StreamId("acc-2")]))
    assert payload == b'{"name":"acc-1","tags":["acc-2"]}'
    metadata = EventMetadata(user={"account": StreamId("acc-3")})
    assert decode_metadata(encode_metadata(metadata)).user == {"account": "acc-3"}


@pytest.mark.parametrize(
    "event",
    [
        Renamed(5, []),  # type: ignore[arg-type]  # an int where a str belongs
        Opened("ann", "ten", datetime(2026, 1, 1, tzinfo=UTC)),  # type: ignore[arg-type]
    ],
)
def test_an_event_that_would_not_decode_again_is_refused_before_it_is_stored(
    codec: Codec, event: object
) -> None:
    with pytest.raises(EncodingError, match="does not decode back"):
        codec.encode(event)


def test_a_nan_that_json_would_turn_into_null_is_refused() -> None:
    codec = Codec()

    @codec.register("t.Measured")
    @dataclass
    class Measured:
        value: float

    with pytest.raises(EncodingError, match="value is nan, which JSON cannot hold"):
        codec.encode(Measured(float("nan")))


def test_an_event_registered_in_another_codec_is_named_as_such() -> None:
    mine = Codec()

    @mine.register("shop.BookAdded")
    @dataclass(frozen=True)
    class BookAdded:
        title: str

    with pytest.raises(EncodingError) as caught:
        default_codec.encode(BookAdded("Dune"))
    message = str(caught.value)
    assert "registered as 'shop.BookAdded' in another Codec, not in the default codec" in message
    assert "codec=" in message
    with pytest.raises(EncodingError, match="in another Codec, not in this codec"):
        Codec().type_name(BookAdded)


# -- int and float subclasses: common value types in domain code -------------------


class Cents(int):
    pass


class Ratio(float):
    pass


class Level(enum.IntEnum):
    LOW = 1
    HIGH = 2


@dataclass(frozen=True)
class Priced:
    amount: Cents
    rate: Ratio
    plain: int
    history: list[Cents]
    by_name: dict[str, Ratio]
    maybe: Cents | None
    account: StreamId
    level: Level


class PricedStruct(msgspec.Struct, frozen=True):
    amount: Cents
    rate: Ratio
    history: list[Cents]
    maybe: Cents | None = None


def _priced() -> Priced:
    return Priced(
        Cents(1250),
        Ratio(0.25),
        Cents(7),
        [Cents(1), Cents(2)],
        {"eur": Ratio(1.5)},
        Cents(3),
        StreamId("acc-1"),
        Level.HIGH,
    )


@pytest.mark.parametrize(
    "event",
    [_priced(), PricedStruct(Cents(5), Ratio(2.0), [Cents(9)], Cents(4))],
    ids=["dataclass", "struct"],
)
def test_int_and_float_subclasses_round_trip_as_their_declared_types(event: object) -> None:
    codec = Codec()
    codec.add(type(event), "t.Priced")
    name, payload = codec.encode(event)
    decoded = codec.decode(_record(name, payload))
    assert decoded == event
    for field in ("amount", "rate", "history", "maybe"):
        mine, theirs = getattr(decoded, field), getattr(event, field)
        assert type(mine) is type(theirs)
        if isinstance(mine, list):
            assert [type(v) for v in mine] == [type(v) for v in theirs]


def test_declared_subclass_types_survive_inside_collections_and_as_str() -> None:
    codec = Codec()
    codec.add(Priced, "t.Priced")
    decoded = codec.decode(_record(*codec.encode(_priced())))
    assert type(decoded.by_name["eur"]) is Ratio
    assert type(decoded.account) is StreamId
    assert type(decoded.level) is Level
    assert type(decoded.plain) is int  # declared int: decodes as int


@pytest.mark.parametrize(
    "payload",
    [b'{"amount": 1.5, "rate": 1, "history": []}', b'{"amount": true, "rate": 1, "history": []}'],
    ids=["float-for-int", "bool-for-int"],
)
def test_a_stored_value_of_the_wrong_kind_does_not_decode_into_an_int_subclass(
    payload: bytes,
) -> None:
    codec = Codec()
    codec.add(PricedStruct, "t.PricedStruct")
    with pytest.raises(DeserializationError, match="Cents"):
        codec.decode(_record("t.PricedStruct", payload))


def test_pydantic_events_keep_their_own_handling_of_int_subclasses() -> None:
    class Charged(pydantic.BaseModel):
        amount: int

    codec = Codec()
    codec.add(Charged, "t.Charged")
    assert codec.decode(_record(*codec.encode(Charged(amount=Cents(3))))) == Charged(amount=3)


# -- NaN and infinity: JSON has neither, and msgspec would write null ---------------

NON_FINITE = pytest.mark.parametrize(
    "bad", [float("nan"), float("inf"), -float("inf")], ids=["nan", "inf", "-inf"]
)


@dataclass(frozen=True)
class Inner:
    level: float | None


@dataclass(frozen=True)
class Reading:
    maybe: float | None = 0.0
    anything: Any = None
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)
    series: list[Any] = dataclasses.field(default_factory=list)
    inner: Inner = Inner(0.0)
    exact: float = 0.0


class ReadingStruct(msgspec.Struct, frozen=True):
    maybe: float | None = None
    extra: dict[str, Any] = {}


class ReadingModel(pydantic.BaseModel):
    maybe: float | None = None
    extra: dict[str, Any] = {}


@NON_FINITE
@pytest.mark.parametrize(
    ("build", "where"),
    [
        (lambda x: Reading(maybe=x), "maybe"),
        (lambda x: Reading(anything=x), "anything"),
        (lambda x: Reading(extra={"k": [1.0, x]}), "extra['k'][1]"),
        (lambda x: Reading(series=[None, x]), "series[1]"),
        (lambda x: Reading(inner=Inner(x)), "inner.level"),
        (lambda x: Reading(exact=x), "exact"),
        (lambda x: Reading(exact=Ratio(x)), "exact"),
        (lambda x: ReadingStruct(maybe=x), "maybe"),
        (lambda x: ReadingStruct(extra={"k": x}), "extra['k']"),
        (lambda x: ReadingModel(maybe=x), "maybe"),
        (lambda x: ReadingModel(extra={"k": {"j": x}}), "extra['k']['j']"),
    ],
    ids=[
        "optional",
        "any",
        "dict",
        "list",
        "nested",
        "float",
        "float-subclass",
        "struct-optional",
        "struct-dict",
        "pydantic-optional",
        "pydantic-dict",
    ],
)
def test_non_finite_floats_are_refused_naming_the_field(build: Any, where: str, bad: float) -> None:
    codec = Codec()
    for cls in (Reading, ReadingStruct, ReadingModel):
        codec.add(cls, f"t.{cls.__name__}")
    with pytest.raises(EncodingError, match=re.escape(f"{where} is {bad!r}")):
        codec.encode(build(bad))


def test_null_and_finite_floats_still_encode() -> None:
    codec = Codec()
    codec.add(Reading, "t.Reading")
    event = Reading(maybe=None, anything=None, extra={"k": None, "null": "null"}, series=[None])
    assert codec.decode(_record(*codec.encode(event))) == event
    # Values msgspec turns into strings or ints are looked at, not mistaken for NaN.
    at = datetime(2026, 1, 2, tzinfo=UTC)
    _, payload = codec.encode(Reading(anything=[None, at, Decimal("1.5"), Level.HIGH]))
    assert payload.startswith(b'{"maybe":0.0,"anything":[null,"2026-01-02T00:00:00Z","1.5",2]')


@NON_FINITE
def test_non_finite_floats_in_metadata_are_refused_naming_the_key(bad: float) -> None:
    with pytest.raises(EncodingError, match=re.escape(f"user['when'][0] is {bad!r}")):
        encode_metadata(EventMetadata(user={"when": [bad]}))


@NON_FINITE
async def test_execute_refuses_non_finite_metadata_and_writes_nothing(
    any_store: EventStore, bad: float
) -> None:
    from eventcore.demo.bank import Deposit, bank_codec

    with pytest.raises(EncodingError, match=re.escape(f"user['rate'] is {bad!r}")):
        await execute(any_store, Deposit("acc-1", 5), codec=bank_codec, metadata={"rate": bad})
    assert await any_store.read_all() == []


@NON_FINITE
async def test_appending_non_finite_metadata_is_refused_and_writes_nothing(
    any_store: EventStore, bad: float
) -> None:
    event = NewEvent(StreamId("a"), "T", b"{}", EventMetadata(user={"rate": bad}))
    with pytest.raises(EncodingError, match=re.escape(f"user['rate'] is {bad!r}")):
        await any_store.append(AppendRequest.create({"a": 0}, [event]))
    assert await any_store.read_all() == []


@dataclass(frozen=True)
class Average:
    mean: float | None = None


@dataclass(frozen=True)
class Measure(Command[Average, Reading]):
    """Folds readings into a mean that becomes NaN, with a snapshot after each fold."""

    reuses_state: ClassVar[bool] = True
    snapshot_every: ClassVar[int] = 1
    snapshot_name: ClassVar[str | None] = "t.Measure"
    state_type: ClassVar[Any] = Average

    def streams(self) -> list[str]:
        return ["sensor"]

    def initial_state(self) -> Average:
        return Average()

    def apply(self, state: Average, stream_id: StreamId, event: Reading) -> Average:
        # A large reading overflows: inf - inf is NaN.
        return Average(event.exact * 10 - event.exact * 10)

    def handle(self, state: Average) -> list[tuple[str, Reading]]:
        return [("sensor", Reading())]


async def test_a_snapshot_state_with_nan_is_refused_not_stored_as_null(
    any_store: EventStore, caplog: pytest.LogCaptureFixture
) -> None:
    codec = Codec()
    codec.add(Reading, "t.Reading")
    sensor = StreamId("sensor")
    first = codec.new_event(sensor, Reading(exact=1e308), EventMetadata())
    await any_store.append(AppendRequest.create({sensor: 0}, [first]))

    class MeasureHere(Measure):  # a class per test: the warning is logged once per class
        pass

    with caplog.at_level(logging.WARNING, logger="eventcore.execute"):
        # A snapshot only saves future work: one that cannot be taken is skipped,
        # with a warning, and the command goes on.
        await execute(any_store, MeasureHere(), codec=codec)
    assert any("mean is nan" in r.getMessage() for r in caplog.records)
    assert len(await any_store.read_all()) == 2
    assert isinstance(any_store, SnapshotStore)
    assert await any_store.load_snapshot(f"t.Measure:{json_encode(['sensor']).decode()}") is None


def test_a_pydantic_model_that_keeps_nan_stores_it_faithfully() -> None:
    class Kept(pydantic.BaseModel):
        model_config = pydantic.ConfigDict(ser_json_inf_nan="constants")
        maybe: float | None = None
        gone: float | None = None

    codec = Codec()
    codec.add(Kept, "t.Kept")
    decoded = codec.decode(_record(*codec.encode(Kept(maybe=float("nan")))))
    assert math.isnan(decoded.maybe)
    assert decoded.gone is None
