"""Turning the application's event objects into stored payloads and back.

Events are the application's own classes — dataclasses, ``msgspec.Struct``\\ s or
pydantic models — registered under an explicit, stable *type name*. The name is
what is stored, never a Python import path, so classes can move and be renamed
without breaking stored events::

    codec = Codec()

    @codec.register("bank.MoneyDeposited")
    @dataclass(frozen=True)
    class MoneyDeposited:
        amount: int

Payloads are JSON, encoded by msgspec (pydantic models by pydantic itself). Each
class gets its decoder built once, at registration.

:data:`default_codec` is the registry used when none is passed;
:func:`event_type` registers into it.
"""

from __future__ import annotations

import dataclasses
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, TypeVar

import msgspec

from eventcore._json import is_pydantic_model, json_decoder, refuse_non_finite
from eventcore._json import json_encode as json_encode  # the backends' JSON encoder too
from eventcore._text import check_storable_text
from eventcore.errors import (
    DeserializationError,
    EncodingError,
    UnknownEventType,
    ValidationError,
)
from eventcore.types import (
    EventMetadata,
    NewEvent,
    RecordedEvent,
    StreamId,
    trusted_metadata,
)

T = TypeVar("T")


MAX_TYPE_NAME_LENGTH: Final = 200


@dataclass(frozen=True, slots=True)
class _Registration:
    cls: type[Any]
    name: str
    encode: Callable[[Any], bytes]
    decode: Callable[[bytes], Any]


def _encode_pydantic(event: Any) -> bytes:
    encoded: bytes = event.model_dump_json().encode()
    # pydantic, too, writes NaN and infinities as null unless the model says
    # otherwise (ser_json_inf_nan="constants" or "strings" keeps them).
    if b"null" in encoded and event.model_config.get("ser_json_inf_nan", "null") == "null":
        refuse_non_finite(event)
    return encoded


def _registration_for(cls: type[Any], name: str) -> _Registration:
    if is_pydantic_model(cls):
        return _Registration(cls, name, _encode_pydantic, cls.model_validate_json)
    if dataclasses.is_dataclass(cls) or issubclass(cls, msgspec.Struct):
        return _Registration(cls, name, json_encode, json_decoder(cls))
    raise ValidationError(
        f"cannot register {cls.__qualname__} as an event: events must be dataclasses, "
        "msgspec.Struct subclasses or pydantic models"
    )


def _check_type_name(name: object) -> str:
    if not isinstance(name, str) or not name.strip() or name != name.strip():
        raise ValidationError(
            f"event type name must be a non-empty str without surrounding white space, got {name!r}"
        )
    if len(name) > MAX_TYPE_NAME_LENGTH:
        raise ValidationError(
            f"event type name {name!r} is {len(name)} characters; "
            f"the limit is {MAX_TYPE_NAME_LENGTH}"
        )
    return check_storable_text(name, "event type name")


# Every codec alive, so that "not registered here" can say where a class *is*
# registered: the usual mistake is running a command with the wrong codec.
_codecs: weakref.WeakSet[Codec] = weakref.WeakSet()


class Codec:
    """A registry of event classes by stable type name, and their JSON encoding."""

    def __init__(self) -> None:
        self._by_class: dict[type[Any], _Registration] = {}
        self._by_name: dict[str, _Registration] = {}
        _codecs.add(self)

    def _not_registered(self, cls: type[Any], doing: str) -> EncodingError:
        elsewhere = sorted({c._by_class[cls].name for c in _codecs if cls in c._by_class})
        which = "the default codec" if self is default_codec else "this codec"
        if elsewhere:
            return EncodingError(
                f"{doing}{cls.__qualname__} is registered as {elsewhere[0]!r} in another "
                f"Codec, not in {which}; pass that codec (execute(..., codec=...) or "
                "Application(store, codec=...))"
            )
        return EncodingError(
            f"{doing}{cls.__qualname__} is not a registered event class in {which}; "
            "register it with Codec.register(name)"
        )

    def register(self, name: str) -> Callable[[type[T]], type[T]]:
        """Class decorator: register the class under the stable type ``name``.

        Registering the same class under the same name again is harmless; reusing a
        name for another class, or a class under another name, is an error.
        """
        _check_type_name(name)

        def decorator(cls: type[T]) -> type[T]:
            self.add(cls, name)
            return cls

        return decorator

    def add(self, cls: type[Any], name: str) -> None:
        """Register ``cls`` under ``name`` (the non-decorator form of :meth:`register`)."""
        _check_type_name(name)
        if not isinstance(cls, type):
            raise ValidationError(f"expected an event class, got {cls!r}")
        known = self._by_name.get(name)
        if known is not None and known.cls is not cls:
            raise ValidationError(
                f"event type name {name!r} is already registered for "
                f"{known.cls.__qualname__}; pick another name for {cls.__qualname__}"
            )
        previous = self._by_class.get(cls)
        if previous is not None and previous.name != name:
            raise ValidationError(
                f"{cls.__qualname__} is already registered as {previous.name!r}; "
                f"it cannot also be {name!r}"
            )
        registration = _registration_for(cls, name)
        self._by_class[cls] = registration
        self._by_name[name] = registration

    def type_name(self, cls: type[Any]) -> str:
        """The stored type name of a registered class."""
        registration = self._by_class.get(cls)
        if registration is None:
            raise self._not_registered(cls, "")
        return registration.name

    @property
    def type_names(self) -> frozenset[str]:
        return frozenset(self._by_name)

    def encode(self, event: object) -> tuple[str, bytes]:
        """Return ``(type name, JSON payload)`` for a registered event object."""
        name, payload, _ = self._encode_and_read_back(event)
        return name, payload

    def _encode_and_read_back(self, event: object) -> tuple[str, bytes, Any]:
        """:meth:`encode`, and the event as a read will decode the payload."""
        registration = self._by_class.get(type(event))
        if registration is None:
            raise self._not_registered(type(event), f"cannot encode {event!r}: ")
        try:
            payload = registration.encode(event)
        except (TypeError, ValueError, OverflowError, msgspec.EncodeError) as exc:
            raise EncodingError(
                f"cannot encode event {registration.name!r} ({event!r}): {exc}"
            ) from exc
        # Stored events are immutable: one that could not be decoded again would
        # make its stream unreadable for good (a str in an int field). So every
        # payload must decode before it is written.
        try:
            read_back = registration.decode(payload)
        except (ValueError, TypeError, msgspec.DecodeError) as exc:
            raise EncodingError(
                f"event {registration.name!r} ({event!r}) would be stored as {payload!r}, "
                f"which does not decode back into {registration.cls.__qualname__}: {exc}"
            ) from exc
        return registration.name, payload, read_back

    def new_event(self, stream_id: StreamId, event: object, metadata: EventMetadata) -> NewEvent:
        """Encode ``event`` into a :class:`NewEvent` for ``stream_id``."""
        name, payload = self.encode(event)
        return NewEvent(stream_id, name, payload, metadata)

    def _new_event_and_read_back(
        self, stream_id: StreamId, event: object, metadata: EventMetadata
    ) -> tuple[NewEvent, Any]:
        """:meth:`new_event`, and the event as a read will decode it: the check that
        the payload decodes has just decoded it, so a state cache folding the
        events it wrote need not decode them again (a decode per event written)."""
        name, payload, read_back = self._encode_and_read_back(event)
        return NewEvent(stream_id, name, payload, metadata), read_back

    def decode(self, record: RecordedEvent) -> Any:
        """Decode a stored record into its registered event class."""
        return self.decode_payload(
            record.event_type, record.payload, record.stream_id, record.stream_version
        )

    def decode_payload(
        self, event_type: str, payload: bytes, stream_id: str, stream_version: int
    ) -> Any:
        """Decode a payload; ``stream_id`` and ``stream_version`` go into errors."""
        registration = self._by_name.get(event_type)
        if registration is None:
            raise UnknownEventType(event_type, stream_id, stream_version)
        try:
            return registration.decode(payload)
        except (ValueError, TypeError, msgspec.DecodeError) as exc:
            # msgspec.ValidationError and pydantic's ValidationError are ValueErrors.
            raise DeserializationError(stream_id, stream_version, event_type, str(exc)) from exc


class _StoredMetadata(msgspec.Struct, omit_defaults=True):
    correlation_id: str | None = None
    causation_id: str | None = None
    user: dict[str, Any] = msgspec.field(default_factory=dict)


_metadata_decoder: Final = msgspec.json.Decoder(_StoredMetadata)
EMPTY_METADATA_JSON: Final = b"{}"


def encode_metadata(metadata: EventMetadata) -> bytes:
    """JSON for a metadata column; raises EncodingError for non-JSON user data."""
    if metadata.correlation_id is None and metadata.causation_id is None and not metadata.user:
        return EMPTY_METADATA_JSON
    user = metadata.user if type(metadata.user) is dict else dict(metadata.user)
    stored = _StoredMetadata(metadata.correlation_id, metadata.causation_id, user)
    try:
        return json_encode(stored)
    except (TypeError, ValueError, OverflowError, msgspec.EncodeError) as exc:
        raise EncodingError(f"event metadata {metadata!r} is not JSON-encodable: {exc}") from exc


def decode_metadata(raw: bytes | str) -> EventMetadata:
    """Inverse of :func:`encode_metadata`; raises msgspec.DecodeError on bad JSON."""
    stored = _metadata_decoder.decode(raw)
    # Typed by the decoder already; built through its slots, once per event read.
    return trusted_metadata(stored.correlation_id, stored.causation_id, stored.user)


default_codec: Final = Codec()


def event_type(name: str) -> Callable[[type[T]], type[T]]:
    """Register a class in :data:`default_codec` under the stable type ``name``."""
    return default_codec.register(name)
