import importlib
import inspect
import subprocess
import sys

import pytest

import eventcore
import eventcore.errors


def test_all_is_sorted_and_every_name_exists() -> None:
    assert eventcore.__all__ == sorted(eventcore.__all__)
    missing = [name for name in eventcore.__all__ if not hasattr(eventcore, name)]
    assert missing == []


def test_every_public_module_level_name_is_in_all() -> None:
    public = {
        name
        for name, value in vars(eventcore).items()
        if not name.startswith("_") and not isinstance(value, type(eventcore))
    }
    assert public == set(eventcore.__all__)


def test_importing_eventcore_pulls_in_no_heavy_dependency() -> None:
    code = (
        "import sys, eventcore; "
        "heavy = [m for m in ('psycopg', 'psycopg_pool', 'asyncpg', 'prometheus_client', "
        "'pydantic', 'aiohttp', 'starlette', 'click', 'rich') if m in sys.modules]; print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# The application developer's names (see the docstring of eventcore/__init__.py for
# the rule). Changing the public surface means editing this set, on purpose.
EXPECTED_PUBLIC_NAMES = {
    # verbs
    "execute",
    "execute_all",
    "follow",
    "open_store",
    # building and running commands
    "Application",
    "Codec",
    "Command",
    "ExecutionResult",
    "RetryPolicy",
    "StateCache",
    "default_codec",
    "event_type",
    # what commands and projections receive
    "EventMetadata",
    "RecordedEvent",
    "StreamId",
    # stores, and the protocol applications type their parameters with
    "EventStore",
    "GroupCommitSettings",
    "InMemoryEventStore",
    "SQLiteEventStore",
    # projections and process managers
    "FailurePolicy",
    "ProcessManager",
    "Projection",
    "ProjectionRunner",
    "run_process_manager",
    # observers
    "CommandReport",
    "Observer",
    # errors: every one, since applications catch them
    "BusinessRuleViolation",
    "CodecError",
    "ConcurrencyError",
    "DeserializationError",
    "DuplicateEventId",
    "EncodingError",
    "EventCoreError",
    "InvalidExpectedVersions",
    "InvalidStreamId",
    "LeaseLost",
    "ProjectionFailed",
    "RetriesExhausted",
    "StateReuseMismatch",
    "StateReuseRefused",
    "StoreClosed",
    "StoreError",
    "StoreUnavailable",
    "TooManyStreams",
    "UndeclaredStreamError",
    "UnknownEventType",
    "ValidationError",
    "VersionConflict",
}


def test_all_is_exactly_the_application_developers_names() -> None:
    assert set(eventcore.__all__) == EXPECTED_PUBLIC_NAMES
    assert len(eventcore.__all__) == len(EXPECTED_PUBLIC_NAMES)  # no name twice


def test_every_error_class_is_public() -> None:
    errors = {
        name
        for name, value in vars(eventcore.errors).items()
        if isinstance(value, type)
        and issubclass(value, eventcore.errors.EventCoreError)
        and not name.startswith("_")
    }
    assert errors <= set(eventcore.__all__)


@pytest.mark.parametrize("name", sorted(EXPECTED_PUBLIC_NAMES))
def test_every_public_name_has_a_docstring(name: str) -> None:
    # an instance (default_codec) is documented by its class, which getdoc falls back to
    assert (inspect.getdoc(getattr(eventcore, name)) or "").strip(), f"{name} has no docstring"


IMPLEMENTER_NAMES = {
    "eventcore.store": [
        "BatchAppender",
        "CheckpointStore",
        "DeadLetter",
        "DeadLetterStore",
        "EventAppender",
        "EventLookup",
        "EventReader",
        "EventStore",
        "LeaseStore",
        "LogFilter",
        "ProjectionStore",
        "SnapshotStore",
        "StreamLister",
    ],
    "eventcore.types": ["AppendRequest", "AppendResult", "NewEvent", "Snapshot"],
    "eventcore.backends": ["GroupCommitSettings"],
    "eventcore.plan": [
        "AppendEvents",
        "LoadSnapshot",
        "LookupEvents",
        "Plan",
        "ReadStreams",
        "SaveSnapshot",
        "Sleep",
        "Step",
        "plan_execution",
        "run_plan",
    ],
}


@pytest.mark.parametrize("module", sorted(IMPLEMENTER_NAMES))
def test_implementer_names_are_importable_from_their_public_homes(module: str) -> None:
    imported = importlib.import_module(module)
    missing = [name for name in IMPLEMENTER_NAMES[module] if not hasattr(imported, name)]
    assert missing == []


@pytest.mark.parametrize("module", ["eventcore.backends", "eventcore.plan", "eventcore.execute"])
def test_a_module_with_all_exports_only_public_names_that_exist(module: str) -> None:
    imported = importlib.import_module(module)
    names: list[str] = imported.__all__
    assert names == sorted(names)
    assert [name for name in names if not hasattr(imported, name)] == []
    assert [name for name in names if name.startswith("_")] == []
