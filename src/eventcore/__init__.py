"""eventcore: multi-stream event sourcing for Python.

A command names the event streams it needs; eventcore reads and folds them, lets
the command decide new events, and appends them atomically across every stream it
read, with an optimistic version check on each (read-only streams included) and
automatic retry on conflict.

What this namespace holds (the rule ``tests/test_public_api.py`` keeps): the names
an *application developer* writes — the verbs (:func:`execute`,
:func:`execute_all`, :func:`follow`, :func:`open_store`), the nouns their code
builds, receives or annotates (commands, codecs, recorded events and their
metadata, results, policies, the bundled stores and their settings, projections,
observers and the reports they get), :class:`EventStore` (applications type their
parameters with it), and every error (they are what applications catch).

The vocabulary of *backend implementers* stays in its real home and is imported
from there: the capability protocols and their records in :mod:`eventcore.store`
(``EventReader``, ``EventAppender``, ``BatchAppender``, ``EventLookup``,
``StreamLister``, ``SnapshotStore``, ``CheckpointStore``, ``LeaseStore``,
``DeadLetter``, ``DeadLetterStore``, ``ProjectionStore``, ``ReplicaReads``,
``LogFilter``), the append records in :mod:`eventcore.types` (``AppendRequest``, ``AppendResult``,
``NewEvent``, ``Snapshot``), observer plumbing in :mod:`eventcore.observe`
(``ObserverGroup``) and :mod:`eventcore.observed_store` (``observe_store``, which
:class:`Application` applies for you), and the executor's steps in
:mod:`eventcore.plan`.
"""

from eventcore.application import Application, open_store
from eventcore.backends import GroupCommitSettings
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
from eventcore.observe import CommandReport, Observer
from eventcore.parallel import execute_all
from eventcore.projection import (
    FailurePolicy,
    ProcessManager,
    Projection,
    ProjectionRunner,
    run_process_manager,
)
from eventcore.retry import RetryPolicy
from eventcore.store import EventStore
from eventcore.subscription import follow
from eventcore.types import EventMetadata, RecordedEvent, StreamId

__version__ = "0.1.0"

__all__ = [
    "Application",
    "BusinessRuleViolation",
    "Codec",
    "CodecError",
    "Command",
    "CommandReport",
    "ConcurrencyError",
    "DeserializationError",
    "DuplicateEventId",
    "EncodingError",
    "EventCoreError",
    "EventMetadata",
    "EventStore",
    "ExecutionResult",
    "FailurePolicy",
    "GroupCommitSettings",
    "InMemoryEventStore",
    "InvalidExpectedVersions",
    "InvalidStreamId",
    "LeaseLost",
    "Observer",
    "ProcessManager",
    "Projection",
    "ProjectionFailed",
    "ProjectionRunner",
    "RecordedEvent",
    "RetriesExhausted",
    "RetryPolicy",
    "SQLiteEventStore",
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
    "open_store",
    "run_process_manager",
]
