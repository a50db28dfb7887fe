"""eventcore: multi-stream event sourcing for Python.

A command names the event streams it needs; eventcore reads and folds them, lets
the command decide new events, and appends them atomically across every stream it
read, with an optimistic version check on each (read-only streams included) and
automatic retry on conflict.
"""

from eventcore.application import Application, open_store
from eventcore.backends._group_commit import GroupCommitSettings
from eventcore.backends.memory import InMemoryEventStore
from eventcore.backends.sqlite import SQLiteEventStore
from eventcore.cache import StateCache
from eventcore.codec import Codec, default_codec, event_type
from eventcore.command import Command
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
from eventcore.execute import ExecutionResult, execute
from eventcore.observe import CommandReport, Observer, ObserverGroup
from eventcore.observed_store import observe_store
from eventcore.parallel import execute_all
from eventcore.projection import FailurePolicy, Projection, ProjectionRunner
from eventcore.retry import RetryPolicy
from eventcore.store import (
    BatchAppender,
    CheckpointStore,
    DeadLetter,
    EventAppender,
    EventLookup,
    EventReader,
    EventStore,
    LeaseStore,
    LogFilter,
    ProjectionStore,
    SnapshotStore,
)
from eventcore.subscription import follow
from eventcore.types import (
    AppendRequest,
    AppendResult,
    EventMetadata,
    NewEvent,
    RecordedEvent,
    Snapshot,
    StreamId,
)

__version__ = "0.1.0"

__all__ = [
    "AppendRequest",
    "AppendResult",
    "Application",
    "BatchAppender",
    "BusinessRuleViolation",
    "CheckpointStore",
    "Codec",
    "CodecError",
    "Command",
    "CommandReport",
    "ConcurrencyError",
    "DeadLetter",
    "DeserializationError",
    "DuplicateEventId",
    "EncodingError",
    "EventAppender",
    "EventCoreError",
    "EventLookup",
    "EventMetadata",
    "EventReader",
    "EventStore",
    "ExecutionResult",
    "FailurePolicy",
    "GroupCommitSettings",
    "InMemoryEventStore",
    "InvalidExpectedVersions",
    "InvalidStreamId",
    "LeaseLost",
    "LeaseStore",
    "LogFilter",
    "NewEvent",
    "Observer",
    "ObserverGroup",
    "Projection",
    "ProjectionFailed",
    "ProjectionRunner",
    "ProjectionStore",
    "RecordedEvent",
    "RetriesExhausted",
    "RetryPolicy",
    "SQLiteEventStore",
    "Snapshot",
    "SnapshotStore",
    "StateCache",
    "StateReuseMismatch",
    "StateReuseRefused",
    "StoreClosed",
    "StoreError",
    "StoreUnavailable",
    "StreamId",
    "TooManyStreams",
    "UndeclaredStreamError",
    "UnknownEventType",
    "ValidationError",
    "VersionConflict",
    "default_codec",
    "event_type",
    "execute",
    "execute_all",
    "follow",
    "observe_store",
    "open_store",
]
