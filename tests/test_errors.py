"""The error tree: every error crosses a process boundary intact."""

from __future__ import annotations

import inspect
import pickle
import uuid

import pytest

import eventcore.errors as errors_module
from eventcore.errors import (
    BusinessRuleViolation,
    CodecError,
    ConcurrencyError,
    DeserializationError,
    DuplicateEventId,
    EncodingError,
    EventCoreError,
    InvalidExpectedVersions,
    InvalidStreamId,
    LeaseLost,
    ProjectionFailed,
    RetriesExhausted,
    StateReuseMismatch,
    StateReuseRefused,
    StoreClosed,
    StoreError,
    StoreUnavailable,
    TooManyStreams,
    UndeclaredStreamError,
    UnknownEventType,
    ValidationError,
    VersionConflict,
)

_CONFLICT = VersionConflict("account-1", 3, 4)

# One example of every error class, built as the library builds it. A class added
# to errors.py without an example here fails test_every_error_class_has_an_example.
EXAMPLES: dict[type[EventCoreError], EventCoreError] = {
    EventCoreError: EventCoreError("something failed"),
    ValidationError: ValidationError("limit must be a positive int, got 0"),
    InvalidStreamId: InvalidStreamId("a*b", "must not contain glob metacharacters '*'"),
    InvalidExpectedVersions: InvalidExpectedVersions("duplicate expected versions"),
    DuplicateEventId: DuplicateEventId([uuid.UUID(int=7), uuid.UUID(int=8)]),
    UndeclaredStreamError: UndeclaredStreamError("order-9", ["account-1", "account-2"]),
    ConcurrencyError: ConcurrencyError("another writer got there first"),
    VersionConflict: _CONFLICT,
    RetriesExhausted: RetriesExhausted(5, _CONFLICT),
    LeaseLost: LeaseLost("projection:balances", 3, 4),
    BusinessRuleViolation: BusinessRuleViolation("insufficient funds"),
    CodecError: CodecError("codec failed"),
    EncodingError: EncodingError("cannot encode"),
    UnknownEventType: UnknownEventType("bank.Gone", "account-1", 7),
    DeserializationError: DeserializationError("account-1", 7, "bank.Deposited", "bad field"),
    StoreError: StoreError("the database refused it"),
    StoreUnavailable: StoreUnavailable("connection lost"),
    StoreClosed: StoreClosed("SQLiteEventStore"),
    TooManyStreams: TooManyStreams("Chase", 1000, ["chase-998", "chase-999"]),
    StateReuseRefused: StateReuseRefused("Transfer has not opted in to reused state"),
    StateReuseMismatch: StateReuseMismatch("Weighted", 2, 10),
    ProjectionFailed: ProjectionFailed("balances", 41, "ValueError: bad amount"),
}


def _error_classes() -> list[type[EventCoreError]]:
    return [
        cls
        for _, cls in inspect.getmembers(errors_module, inspect.isclass)
        if issubclass(cls, EventCoreError) and cls.__module__ == errors_module.__name__
    ]


def test_every_error_class_has_an_example() -> None:
    missing = [cls.__name__ for cls in _error_classes() if cls not in EXAMPLES]
    assert not missing, f"add an example of {missing} to EXAMPLES"


@pytest.mark.parametrize("error", EXAMPLES.values(), ids=lambda e: type(e).__name__)
def test_an_error_survives_pickle_with_its_message_and_attributes(
    error: EventCoreError,
) -> None:
    for protocol in range(pickle.HIGHEST_PROTOCOL + 1):
        copy = pickle.loads(pickle.dumps(error, protocol=protocol))
        assert type(copy) is type(error)
        assert str(copy) == str(error)
        assert _attributes(copy) == _attributes(error)


def test_a_pickled_retries_exhausted_keeps_its_last_conflict() -> None:
    copy = pickle.loads(pickle.dumps(EXAMPLES[RetriesExhausted]))
    assert isinstance(copy, RetriesExhausted)
    assert (copy.last_conflict.stream_id, copy.last_conflict.expected) == ("account-1", 3)


def test_validation_errors_are_value_errors() -> None:
    assert all(
        issubclass(cls, ValueError) for cls in _error_classes() if issubclass(cls, ValidationError)
    )


def _attributes(error: BaseException) -> dict[str, object]:
    values = {k: v for k, v in vars(error).items() if not k.startswith("_")}
    return {k: str(v) if isinstance(v, BaseException) else v for k, v in values.items()}
