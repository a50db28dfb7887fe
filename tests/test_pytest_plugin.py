"""The pytest plugin shipped with eventcore, run the way a user's suite runs it."""

from __future__ import annotations

import pytest

from tests import pg

pytest_plugins = ["pytester"]

USER_TESTS = """
import pytest
from dataclasses import dataclass

from eventcore import BusinessRuleViolation, Codec, Command, StreamId, execute

codec = Codec()


@codec.register("t.Added")
@dataclass(frozen=True)
class Added:
    n: int


@dataclass(frozen=True)
class Add(Command[int, Added]):
    n: int

    def streams(self):
        return ["counter"]

    def initial_state(self):
        return 0

    def apply(self, state, stream_id, event):
        return state + event.n

    def handle(self, state):
        if state + self.n > 10:
            raise BusinessRuleViolation("too much")
        return [("counter", Added(self.n))]


@pytest.mark.asyncio
async def test_on_every_store(eventcore_store):
    await execute(eventcore_store, Add(3), codec=codec)
    assert [e.stream_version for e in await eventcore_store.read_stream("counter")] == [1]
    print("KIND", type(eventcore_store).__name__)


@pytest.mark.asyncio
async def test_each_store_is_fresh(eventcore_store):
    assert await eventcore_store.head_position() == 0


def test_given_when_then(eventcore_given):
    eventcore_given({"counter": [Added(9)]}, codec=codec).when(Add(2)).then_raises(
        BusinessRuleViolation, match="too much"
    )
"""


def test_the_plugin_runs_a_users_tests_on_memory_and_sqlite(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_user=USER_TESTS)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-s", "-q")
    result.assert_outcomes(passed=5)
    result.stdout.fnmatch_lines(["*KIND InMemoryEventStore*", "*KIND SQLiteEventStore*"])


@pytest.mark.postgres
async def test_the_plugin_adds_postgres_when_a_server_is_named(pytester: pytest.Pytester) -> None:
    await pg.require_server()
    pytester.makepyfile(test_user=USER_TESTS)
    result = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "-s", "-q", f"--eventcore-postgres-url={pg.PG_URL}"
    )
    result.assert_outcomes(passed=7)
    result.stdout.fnmatch_lines(["*KIND PostgresEventStore*"])


def test_the_postgres_fixture_skips_when_no_server_is_named(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("EVENTCORE_TEST_POSTGRES_URL", raising=False)
    pytester.makepyfile(
        test_pg="""
import pytest

@pytest.mark.asyncio
async def test_needs_a_server(eventcore_postgres_store):
    raise AssertionError("never runs without a server")
"""
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-q", "-rs")
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["*no PostgreSQL server named*"])
