"""Value types shared by every layer: stream ids, event records, append requests.

Versions and positions are plain ``int``s (fast, and what every driver speaks);
they are validated where they enter the library, in :class:`AppendRequest` and the
read functions' argument checks.

- A stream's *version* is the number of events in it: 0 for an empty or missing
  stream, and its events carry versions 1, 2, 3, ... without gaps.
- A *global position* is an event's place in the store-wide log: strictly
  increasing in commit order, starting at 1. ``read_all(after=0)`` starts at the
  beginning.
"""

from __future__ import annotations

import itertools
import os
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import Any, Final, cast

from eventcore._text import check_storable_text, unstorable_text_reason
from eventcore.errors import (
    DuplicateEventId,
    InvalidExpectedVersions,
    InvalidStreamId,
    ValidationError,
)

MAX_STREAM_ID_LENGTH: Final = 255
_GLOB_METACHARACTERS: Final = frozenset("*?[]")


class StreamId(str):
    """A validated stream name: trimmed, non-empty, at most 255 characters, no glob
    metacharacters (``* ? [ ]``), so that patterns can never be mistaken for ids,
    and no NUL or lone surrogate (no database stores them in text).

    It is a ``str``, so it works as a dict key, sorts, and goes to a driver as is.
    Surrounding white space is trimmed; anything else invalid raises
    :class:`~eventcore.errors.InvalidStreamId`.
    """

    __slots__ = ()

    def __new__(cls, value: str) -> StreamId:
        if type(value) is cls:
            return value  # already validated
        if type(value) is not str or cls is not StreamId:
            return str.__new__(cls, _checked_stream_id(value))
        known = _recently_validated.get(value)
        if known is None:
            if len(_recently_validated) >= _RECENTLY_VALIDATED_MAX:
                _recently_validated.clear()  # a bound, not an LRU: a miss only costs a check
            known = _recently_validated[value] = str.__new__(cls, _checked_stream_id(value))
        return known


# The ids validated lately, by the str given: commands name their streams as plain
# strs, validated on every execution (strip, length, text and glob checks, about
# 0.5 us of CPU per stream), though a workload names the same streams again and
# again. A dict lookup answers instead (the checks depend on the str alone).
# Cleared when full, so the bound must hold a workload's working set: with 4,096,
# commands over 10,000 accounts re-validated 77% of their ids (1.5-2 us a command
# on the in-memory store). At most 16,384 pairs of strs: about 3 MB for
# 100-character ids.
_RECENTLY_VALIDATED_MAX: Final = 16_384
_recently_validated: dict[str, StreamId] = {}


def _checked_stream_id(value: object) -> str:
    """``value`` trimmed, if it is a valid stream id; else raise InvalidStreamId."""
    if not isinstance(value, str):
        raise InvalidStreamId(value, f"must be a str, not {type(value).__name__}")
    trimmed = value.strip()
    if not trimmed:
        raise InvalidStreamId(value, "must not be empty or only white space")
    if len(trimmed) > MAX_STREAM_ID_LENGTH:
        raise InvalidStreamId(
            value, f"is {len(trimmed)} characters long; the limit is {MAX_STREAM_ID_LENGTH}"
        )
    unstorable = unstorable_text_reason(trimmed)
    if unstorable is not None:
        raise InvalidStreamId(value, unstorable)
    bad = _GLOB_METACHARACTERS.intersection(trimmed)
    if bad:
        raise InvalidStreamId(
            value, f"must not contain glob metacharacters {''.join(sorted(bad))!r}"
        )
    return trimmed


def trusted_stream_id(value: str) -> StreamId:
    """Wrap a stream id read back from storage, where it was validated on the way in."""
    return str.__new__(StreamId, value)


# Versions, positions and limits are stored as 64-bit integers by every database.
MAX_INT64: Final = 2**63 - 1


def check_version(value: object, what: str = "version") -> int:
    """Return ``value`` if it is a non-negative int (not a bool) that fits in 64
    bits, else raise."""
    if type(value) is not int or not 0 <= value <= MAX_INT64:
        raise ValidationError(f"{what} must be an int from 0 to 2**63-1, got {value!r}")
    return value


def check_limit(value: object) -> int | None:
    """Return ``value`` if it is ``None`` or a positive int, else raise."""
    if value is None:
        return None
    if type(value) is not int or not 1 <= value <= MAX_INT64:
        raise ValidationError(
            f"limit must be a positive int (up to 2**63-1) or None, got {value!r}"
        )
    return value


# Event ids follow RFC 9562 section 6.2, method 2 ("monotonic random"): rand_a
# (12 bits) is drawn once per process, and rand_b (62 bits) starts at a random
# value and grows by one per id. That costs a counter step instead of an
# os.urandom() system call per id (with the UUID built directly, below: 1.8 ->
# 0.9 us of CPU per id, median of 5), and ids made in one process within one
# millisecond sort in the order they were made. Two processes collide only if
# they drew the same rand_a and their counters' starting points fall within the
# number of ids they make in the same millisecond of each other (odds about
# n / 2**74). rand_b wraps after 2**62 ids. A forked child draws anew.
#
# Fixing rand_a per process, rather than carrying the counter into it, leaves
# one bitwise OR of a constant per id instead of splitting the counter in two
# (timeit: 336 -> 236 ns per id).
_RAND_B: Final = (1 << 62) - 1
_UNIX_MS: Final = (1 << 48) - 1
_VARIANT: Final = 0x2 << 62
_UNKNOWN_SAFETY: Final = uuid.SafeUUID.unknown  # an enum member lookup costs a property call
_new: Final = object.__new__
_set_uuid_int: Final = cast(Any, uuid.UUID).int.__set__
_set_uuid_is_safe: Final = cast(Any, uuid.UUID).is_safe.__set__
_counter: itertools.count[int]
_version_rand_a_variant: int  # the id bits that are the same for every id of the process
_rand_a_text: str  # how those bits read in an id's text
# The millisecond a correlation id was made in last, and the text its id starts
# with (see new_correlation_id). One tuple, replaced whole: a thread never sees
# the text of one millisecond paired with another.
_ms_text: tuple[int, str] = (-1, "")


def _draw_counter() -> None:
    global _counter, _version_rand_a_variant, _rand_a_text, _ms_text
    rand_a = int.from_bytes(os.urandom(2), "big") & 0xFFF
    _version_rand_a_variant = (0x7 << 76) | (rand_a << 64) | _VARIANT
    _rand_a_text = "7%03x" % rand_a  # noqa: UP031 - as UUID.__str__ formats
    _ms_text = (-1, "")
    # next() on itertools.count is one C call, atomic under the GIL: no lock needed.
    _counter = itertools.count(int.from_bytes(os.urandom(8), "big") & _RAND_B)


_draw_counter()
os.register_at_fork(after_in_child=_draw_counter)


def _uuid7_int() -> int:
    """The 128 bits of a fresh UUIDv7 (RFC 9562): unix milliseconds, then the
    version, rand_a and the variant, then the counter's 62 bits."""
    unix_ms = time.time_ns() // 1_000_000
    return (unix_ms & _UNIX_MS) << 80 | _version_rand_a_variant | (next(_counter) & _RAND_B)


def new_event_id() -> uuid.UUID:
    """A UUIDv7 (RFC 9562): time-ordered, so ids index well; never used for ordering."""
    # uuid.UUID(int=...) spends its time on argument checks that cannot fail here;
    # set the two slots directly, as UUID.__setstate__ does (a test compares), and
    # through their descriptors rather than object.__setattr__, which looks each
    # name up first (callgrind: 9.2k -> 7.3k instructions per id).
    # Inline rather than trusted_uuid(_uuid7_int()): a Python call less per event.
    made = _new(uuid.UUID)
    _set_uuid_int(made, _uuid7_int())
    _set_uuid_is_safe(made, _UNKNOWN_SAFETY)
    return made


def trusted_uuid(value: int) -> uuid.UUID:
    """``uuid.UUID(int=value)`` for a ``value`` known to be a UUID's 128 bits (one
    the library made, or read back from a ``UUID.int``): no argument checks."""
    made = _new(uuid.UUID)
    _set_uuid_int(made, value)
    _set_uuid_is_safe(made, _UNKNOWN_SAFETY)
    return made


def new_correlation_id() -> str:
    """A fresh correlation id: the text of a UUIDv7 like :func:`new_event_id`'s,
    made without a ``UUID`` object. Its first three groups (the millisecond,
    the version and rand_a) are formatted once per millisecond; only the last
    64 bits are formatted per id (timeit: 970 -> 480 ns; a ``str(UUID)`` costs
    more than either)."""
    global _ms_text
    unix_ms = time.time_ns() // 1_000_000
    made_in, start = _ms_text
    if made_in != unix_ms:
        text = "%012x" % (unix_ms & _UNIX_MS)
        start = f"{text[:8]}-{text[8:]}-{_rand_a_text}-"
        _ms_text = (unix_ms, start)
    low = "%016x" % (_VARIANT | (next(_counter) & _RAND_B))
    return f"{start}{low[:4]}-{low[4:]}"


@dataclass(frozen=True, slots=True)
class EventMetadata:
    """What is known about why an event was written.

    ``correlation_id`` ties together everything one request caused;
    ``causation_id`` names the message (command or event) that caused this one;
    ``user`` is free-form, JSON-encodable data of the application's own.
    """

    correlation_id: str | None = None
    causation_id: str | None = None
    user: Mapping[str, Any] = field(default_factory=dict)


EMPTY_METADATA: Final = EventMetadata()


@dataclass(frozen=True, slots=True, init=False)
class NewEvent:
    """An encoded event on its way into the store. ``event_id`` defaults to a
    fresh :func:`new_event_id`."""

    stream_id: StreamId
    event_type: str
    payload: bytes
    metadata: EventMetadata = EMPTY_METADATA
    event_id: uuid.UUID = field(default_factory=new_event_id)

    # Written out rather than generated: a frozen dataclass's __init__ sets each
    # field with object.__setattr__, which looks the name up on every call (see
    # slot_setters below). Every event written is built here, the executor's
    # included (timeit: 0.82 -> 0.58 µs per event, id included).
    def __init__(
        self,
        stream_id: StreamId,
        event_type: str,
        payload: bytes,
        metadata: EventMetadata = EMPTY_METADATA,
        event_id: uuid.UUID | None = None,
    ) -> None:
        _set_new_stream(self, stream_id)
        _set_new_type(self, event_type)
        _set_new_payload(self, payload)
        _set_new_metadata(self, metadata)
        _set_new_id(self, new_event_id() if event_id is None else event_id)


@dataclass(frozen=True, slots=True)
class RecordedEvent:
    """An event as stored: immutable, with its place in its stream and in the log."""

    event_id: uuid.UUID
    stream_id: StreamId
    stream_version: int
    global_position: int
    event_type: str
    payload: bytes
    metadata: EventMetadata
    recorded_at: datetime


# Trusted construction, for values the library made or read back itself. A frozen
# dataclass's __init__ sets each field with object.__setattr__, which looks the
# name up on every call; setting the slots through their descriptors does the same
# work without that (callgrind, per object: RecordedEvent 13.3k -> 7.5k
# instructions, EventMetadata 6.0k -> 3.7k). The public constructors stay as they
# are; these skip nothing they check (they check nothing), only the lookups.
def slot_setters(cls: type) -> tuple[Callable[[Any, Any], None], ...]:
    """The ``__set__`` of each field's slot descriptor, in field order, of a
    dataclass made with ``slots=True``: what a trusted builder calls."""
    return tuple(getattr(cls, f.name).__set__ for f in fields(cls))


(_set_correlation, _set_causation, _set_user) = slot_setters(EventMetadata)
(
    _set_new_stream,
    _set_new_type,
    _set_new_payload,
    _set_new_metadata,
    _set_new_id,
) = slot_setters(NewEvent)
(
    _set_id,
    _set_stream,
    _set_version,
    _set_position,
    _set_type,
    _set_payload,
    _set_metadata,
    _set_recorded_at,
) = slot_setters(RecordedEvent)


def trusted_metadata(
    correlation_id: str | None, causation_id: str | None, user: Mapping[str, Any]
) -> EventMetadata:
    """``EventMetadata(correlation_id, causation_id, user)``, built without the
    dataclass ``__init__`` (see above)."""
    made = _new(EventMetadata)
    _set_correlation(made, correlation_id)
    _set_causation(made, causation_id)
    _set_user(made, user)
    return made


def trusted_recorded_event(
    event_id: uuid.UUID,
    stream_id: StreamId,
    stream_version: int,
    global_position: int,
    event_type: str,
    payload: bytes,
    metadata: EventMetadata,
    recorded_at: datetime,
) -> RecordedEvent:
    """``RecordedEvent(...)`` built without the dataclass ``__init__`` (see
    above): every store builds one per event it writes or reads."""
    made = _new(RecordedEvent)
    _set_id(made, event_id)
    _set_stream(made, stream_id)
    _set_version(made, stream_version)
    _set_position(made, global_position)
    _set_type(made, event_type)
    _set_payload(made, payload)
    _set_metadata(made, metadata)
    _set_recorded_at(made, recorded_at)
    return made


def _check_collection(value: object, name: str, wanted: str, *, mapping_ok: bool = True) -> None:
    """Refuse what is not a collection, and strings that would iterate as one."""
    if (
        isinstance(value, str | bytes)
        or not isinstance(value, Iterable)
        or (not mapping_ok and isinstance(value, Mapping))
    ):
        raise ValidationError(f"{name} must be {wanted}, got {value!r}")


def _check_new_event(event: NewEvent, storable_types: set[str]) -> None:
    """Refuse a malformed event; ``storable_types`` holds the event types already
    found storable in this append (a batch mostly repeats a few)."""
    event_type = event.event_type
    if not isinstance(event_type, str) or not event_type:
        raise ValidationError(
            f"event_type must be a non-empty str, got {event_type!r} "
            f"(event for stream {event.stream_id!r})"
        )
    if event_type not in storable_types:
        storable_types.add(check_storable_text(event_type, "event_type"))
    if not isinstance(event.payload, bytes):
        raise ValidationError(
            f"payload must be bytes (the encoded event), got {type(event.payload).__name__} "
            f"(event {event.event_type!r} for stream {event.stream_id!r})"
        )
    if not isinstance(event.event_id, uuid.UUID):
        raise ValidationError(f"event_id must be a uuid.UUID, got {event.event_id!r}")


def _check_metadata(metadata: object) -> None:
    if not isinstance(metadata, EventMetadata):
        raise ValidationError(f"event metadata must be an EventMetadata, got {metadata!r}")
    for name in ("correlation_id", "causation_id"):
        value = getattr(metadata, name)
        if value is not None:
            if not isinstance(value, str):
                raise ValidationError(f"metadata {name} must be a str or None, got {value!r}")
            check_storable_text(value, f"metadata {name}")
    if not isinstance(metadata.user, Mapping):
        raise ValidationError(f"metadata user must be a mapping, got {metadata.user!r}")


def _checked_expected(expected: object) -> dict[StreamId, int]:
    _check_collection(expected, "expected", "a mapping of stream id to version")
    pairs = expected.items() if isinstance(expected, Mapping) else expected
    seen: dict[StreamId, int] = {}
    for pair in cast(Iterable[object], pairs):
        if not isinstance(pair, tuple | list) or len(pair) != 2:
            raise ValidationError(f"expected must hold (stream id, version) pairs, got {pair!r}")
        stream = StreamId(pair[0])
        version = pair[1]
        if type(version) is not int or not 0 <= version <= MAX_INT64:
            raise InvalidExpectedVersions(
                f"expected version of stream {stream!r} must be an int from 0 to "
                f"2**63-1, got {version!r}"
            )
        if stream in seen:
            kind = "contradictory" if seen[stream] != version else "duplicate"
            raise InvalidExpectedVersions(
                f"{kind} expected versions for stream {stream!r}: "
                f"{seen[stream]} and {version}; name each stream once"
            )
        seen[stream] = version
    return seen


def _checked_events(events: object, expected: Mapping[StreamId, int]) -> tuple[NewEvent, ...]:
    _check_collection(events, "events", "a sequence of NewEvent", mapping_ok=False)
    checked = tuple(cast(Iterable[object], events))
    metadata_seen: set[int] = set()
    storable_types: set[str] = set()
    # The ids' 128-bit ints, not the UUIDs: an int hashes in C, a UUID through
    # a Python __hash__ (each id is also looked up once, not twice).
    ids: set[int] = set()
    repeated: dict[uuid.UUID, None] = {}  # ordered, for the message
    for event in checked:
        if not isinstance(event, NewEvent):
            raise ValidationError(f"append takes NewEvent objects, got {event!r}")
        _check_new_event(event, storable_types)
        if id(event.metadata) not in metadata_seen:
            _check_metadata(event.metadata)
            metadata_seen.add(id(event.metadata))
        if not isinstance(event.stream_id, str) or event.stream_id not in expected:
            raise InvalidExpectedVersions(
                f"event {event.event_type!r} is addressed to stream "
                f"{event.stream_id!r}, which has no expected version in this append; "
                "list every stream written to in expected"
            )
        seen = len(ids)
        ids.add(event.event_id.int)
        if len(ids) == seen:
            repeated[event.event_id] = None
    if repeated:
        raise DuplicateEventId(repeated)
    return cast(tuple[NewEvent, ...], checked)


@dataclass(frozen=True, slots=True)
class AppendRequest:
    """One atomic append: the version every participating stream must be at, and the
    events to write.

    ``expected`` lists *every* stream the decision depended on, including streams
    that are only read; the append succeeds only if all of them are still at the
    given version. Every stream written to must be listed, once.

    Building one validates (and normalises: stream ids become :class:`StreamId`,
    sequences become tuples), whether through the constructor or :meth:`create`,
    so a store never sees a request that breaks these rules.
    """

    expected: tuple[tuple[StreamId, int], ...]
    events: tuple[NewEvent, ...]

    def __post_init__(self) -> None:
        expected = _checked_expected(self.expected)
        events = _checked_events(self.events, expected)
        # Frozen: the normalised values go in the way the dataclass __init__ does it.
        object.__setattr__(self, "expected", tuple(expected.items()))
        object.__setattr__(self, "events", events)

    @classmethod
    def create(
        cls,
        expected: Mapping[StreamId, int] | Mapping[str, int] | Iterable[tuple[str, int]],
        events: Sequence[NewEvent] = (),
    ) -> AppendRequest:
        """Build a request from a mapping (or pairs) of stream id to expected version."""
        return cls(cast(Any, expected), cast(Any, events))

    @classmethod
    def _trusted(
        cls, expected: tuple[tuple[StreamId, int], ...], events: tuple[NewEvent, ...]
    ) -> AppendRequest:
        """Skip the checks: only for the executor, whose request is valid by
        construction (the versions it read, keyed by StreamId; events its codec
        built for streams it checked were read). Stores still refuse repeated ids."""
        request = _new(cls)
        _set_expected(request, expected)  # see trusted_metadata
        _set_events(request, events)
        return request


@dataclass(frozen=True, slots=True)
class AppendResult:
    """What an append wrote.

    ``stream_versions`` holds the version of every participating stream after the
    append (unchanged for read-only participants); ``positions`` holds the global
    position of each written event, in the order the events were given.
    """

    stream_versions: Mapping[str, int]
    positions: tuple[int, ...]

    @property
    def last_position(self) -> int | None:
        return self.positions[-1] if self.positions else None


_set_expected, _set_events = slot_setters(AppendRequest)
_set_stream_versions, _set_positions = slot_setters(AppendResult)


def trusted_append_result(
    stream_versions: Mapping[str, int], positions: tuple[int, ...]
) -> AppendResult:
    """``AppendResult(...)`` built without the dataclass ``__init__`` (see
    :func:`trusted_metadata`), for a store's reply to each append."""
    made = _new(AppendResult)
    _set_stream_versions(made, stream_versions)
    _set_positions(made, positions)
    return made


@dataclass(frozen=True, slots=True)
class Snapshot:
    """A command's folded state, encoded, as of the given stream versions."""

    key: str
    versions: tuple[tuple[StreamId, int], ...]
    state: bytes

    def supersedes(self, other: Snapshot) -> bool:
        """True if this snapshot was folded from at least every event ``other`` was
        (and more): only then may it replace ``other``."""
        mine = dict(self.versions)
        newer = False
        for stream, version in other.versions:
            if mine.get(stream, -1) < version:
                return False
            newer = newer or mine[stream] > version
        return newer or len(mine) > len(other.versions)
