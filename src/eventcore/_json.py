"""JSON in and out: the one encoder and the decoders built beside it.

msgspec encodes exact ``str``, ``int`` and ``float`` only, and writes NaN and the
infinities as ``null``. Here subclasses (a ``StreamId``, a domain's ``class
Cents(int)``) go out as their plain value and come back as the declared type,
and a non-finite float is refused rather than silently turned into ``null``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterator
from typing import Any, Final, TypeVar

import msgspec

T = TypeVar("T")


def is_pydantic_model(cls: type[Any]) -> bool:
    return callable(getattr(cls, "model_validate_json", None)) and callable(
        getattr(cls, "model_dump_json", None)
    )


def _encode_value_subclass(value: Any) -> Any:
    # msgspec encodes exact str, int and float only; subclasses (StreamId, a
    # domain's `class Cents(int)`) go out as their plain value. The base class's own
    # conversion ignores any __str__ / __int__ / __float__ the subclass overrides.
    if isinstance(value, str):
        return str.__str__(value)
    if isinstance(value, int):
        return int.__int__(value)
    if isinstance(value, float):
        return float.__float__(value)
    raise TypeError(f"Encoding objects of type {type(value).__name__} is unsupported")


def _decode_value_subclass(cls: type[Any], value: Any) -> Any:
    # Called by msgspec for declared types it does not know: rebuild the declared
    # str / int / float subclass from the plain JSON value, which must be of the
    # right kind (no bool for an int, no float for an int).
    if issubclass(cls, str) and type(value) is str:
        return cls(value)
    if issubclass(cls, int) and not issubclass(cls, bool) and type(value) is int:
        return cls(value)
    if issubclass(cls, float) and type(value) in (int, float):
        return cls(value)
    raise TypeError(f"Expected `{cls.__name__}`, got `{type(value).__name__}`")


_encode: Final = msgspec.json.Encoder(enc_hook=_encode_value_subclass).encode


class NonFiniteFloat(ValueError):
    """A NaN or an infinity, which JSON cannot hold, was about to be encoded."""


def json_encode(value: Any) -> bytes:
    """The one JSON encoder: events, metadata, snapshot states and the backends'
    own JSON columns. Raises :class:`NonFiniteFloat` (a ValueError) for a NaN or
    an infinity anywhere in ``value``."""
    encoded = _encode(value)
    # msgspec writes NaN and infinities as null: refuse them rather than change the
    # data. Only output that holds a null can hide one, so only then walk the value.
    if b"null" in encoded:
        refuse_non_finite(value)
    return encoded


def refuse_non_finite(value: Any, path: str = "") -> None:
    """Raise :class:`NonFiniteFloat` naming where in ``value`` a NaN or an
    infinity is (fields as ``.name``, items as ``[key]``)."""
    if isinstance(value, float):
        if not math.isfinite(value):
            where = path.lstrip(".") or "the value"
            raise NonFiniteFloat(
                f"{where} is {value!r}, which JSON cannot hold (it would be stored as "
                "null); use None, a finite float or a Decimal"
            )
        return
    for item, item_path in _parts(value, path):
        refuse_non_finite(item, item_path)


def _parts(value: Any, path: str) -> Iterator[tuple[Any, str]]:
    """The values inside a container or a record that msgspec or pydantic encode."""
    if isinstance(value, str | bytes | int):
        return
    if isinstance(value, dict):
        yield from ((item, f"{path}[{key!r}]") for key, item in value.items())
    elif isinstance(value, list | tuple | set | frozenset):
        yield from ((item, f"{path}[{index}]") for index, item in enumerate(value))
    elif isinstance(value, msgspec.Struct):
        yield from ((getattr(value, n), f"{path}.{n}") for n in value.__struct_fields__)
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        yield from ((getattr(value, f.name), f"{path}.{f.name}") for f in dataclasses.fields(value))
    elif is_pydantic_model(type(value)):
        yield from ((item, f"{path}.{n}") for n, item in value.model_dump().items())
    elif value is not None:
        # Anything else msgspec encoded (attrs classes, datetimes, enums, ...): look
        # at the plain values it became, which keep their floats.
        plain = msgspec.to_builtins(value, enc_hook=_encode_value_subclass)
        if isinstance(plain, dict | list):
            yield from _parts(plain, path)


def json_decoder(cls: type[T]) -> Callable[[bytes], T]:
    """A decoder into ``cls`` that rebuilds what :data:`json_encode` wrote, value
    subclasses included."""
    return msgspec.json.Decoder(cls, dec_hook=_decode_value_subclass).decode
