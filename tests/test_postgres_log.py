"""The PostgreSQL log under load: many processes, slow transactions, big batches.

All against the real server; each test has a schema of its own.
"""

from __future__ import annotations

import asyncio
import sys
import tracemalloc
from collections import Counter
from pathlib import Path

import asyncpg
import pytest

from eventcore import StreamId, VersionConflict, execute
from eventcore.backends.postgres import PostgresEventStore
from eventcore.backends.postgres._migrate import available_migrations
from eventcore.backends.postgres._writes import BatchArrays
from eventcore.demo.bank import Deposit, MoneyDeposited, bank_codec
from eventcore.store import EventStore
from eventcore.types import AppendRequest, NewEvent
from tests import pg

pytestmark = pytest.mark.postgres
REPO = Path(__file__).resolve().parent.parent


def _events(stream: str, count: int, size: int = 20) -> list[NewEvent]:
    return [
        NewEvent(StreamId(stream), "Tick", b'{"n":%d,"pad":"%s"}' % (i, b"x" * size))
        for i in range(count)
    ]


async def _tail_until(store: PostgresEventStore, stop: asyncio.Event) -> list[tuple[int, str]]:
    """Follow the log with read_all(after=P), woken by LISTEN/NOTIFY, until told."""
    seen: list[tuple[int, str]] = []
    position = 0
    while True:
        finished = stop.is_set()
        page = await store.read_all(after=position, limit=500)
        seen += [(e.global_position, str(e.event_id)) for e in page]
        if page:
            position = page[-1].global_position
        elif finished:
            return seen
        else:
            await store.wait_for_append(position, max_wait=0.05)


# -- many writer processes and a tailing reader -------------------------------------

WRITERS = 8
TRANSFERS_PER_WRITER = 500
ACCOUNTS = 20
OPENING = 100


async def _check_bank(store: EventStore, committed: set[str]) -> None:
    log = await store.read_all()
    assert [e.global_position for e in log] == list(range(1, len(log) + 1)), "gaps in the log"
    assert len({e.event_id for e in log}) == len(log)
    total = 0
    for n in range(ACCOUNTS):
        events = await store.read_stream(f"account-{n}")
        assert [e.stream_version for e in events] == list(range(1, len(events) + 1))
        balance = 0
        for record in events:
            event = bank_codec.decode(record)
            balance += event.amount if isinstance(event, MoneyDeposited) else -event.amount
            assert balance >= 0, f"account-{n} overdrawn at version {record.stream_version}"
        total += balance
    assert total == OPENING * ACCOUNTS, "money was created or lost"
    written = Counter(bank_codec.decode(e).reference for e in log)
    del written[""]
    assert set(written) == committed
    assert set(written.values()) == {2}, "a transfer was written other than exactly once"


@pytest.mark.slow
async def test_eight_writer_processes_and_a_tailing_reader_agree_on_the_whole_log(
    pg_schema: str,
) -> None:
    async with await pg.fresh_store(pg_schema) as store:
        for n in range(ACCOUNTS):
            await execute(store, Deposit(f"account-{n}", OPENING), codec=bank_codec)
        writers = [
            await pg.start_writer(
                "tests.pg_transfer_proc", pg_schema, w, TRANSFERS_PER_WRITER, 1000 + w, ACCOUNTS
            )
            for w in range(WRITERS)
        ]
        stop = asyncio.Event()
        reader = asyncio.create_task(_tail_until(store, stop))
        await pg.release_writers(writers)
        reports = await pg.writer_reports(writers)
        stop.set()
        seen = await reader

        final = [(e.global_position, str(e.event_id)) for e in await store.read_all()]
        assert seen == final, "the tailing reader's log differs from the final log"
        committed = {ref for r in reports for ref in r["committed"]}
        accounted = sum(len(r["committed"]) + r["refused"] + r["exhausted"] for r in reports)
        assert accounted == WRITERS * TRANSFERS_PER_WRITER
        assert sum(r["retries"] for r in reports) > 0, "the writers must really conflict"
        await _check_bank(store, committed)


# -- a slow transaction holding a low position ------------------------------------


async def test_a_slow_transaction_holding_a_low_position_is_not_skipped_by_a_tailing_reader(
    pg_schema: str,
) -> None:
    async with await pg.fresh_store(pg_schema) as store:
        slow = AppendRequest.create({"slow": 0}, _events("slow", 1))
        raw = await asyncpg.connect(pg.PG_URL)
        try:
            transaction = raw.transaction()
            await transaction.start()
            # The slow writer takes position 1 and pauses before its commit.
            await raw.fetch(
                store._sql.append_batch,  # the store's own one-round-trip append
                *BatchArrays.build([slow], 1 << 20).parameters(),
            )
            stop = asyncio.Event()
            reader = asyncio.create_task(_tail_until(store, stop))
            fast = [
                asyncio.create_task(
                    store.append(AppendRequest.create({f"fast-{i}": 0}, _events(f"fast-{i}", 2)))
                )
                for i in range(5)
            ]
            await asyncio.sleep(0.5)
            # Nobody can commit past the slow transaction's position...
            assert not any(task.done() for task in fast)
            assert await store.read_all() == []
            await transaction.commit()
        finally:
            await raw.close()
        results = await asyncio.gather(*fast)
        stop.set()
        seen = await reader

    final_positions = [p for p, _ in seen]
    assert final_positions == list(range(1, 12))
    assert sorted(p for r in results for p in r.positions) == list(range(2, 12))


# -- big batches and bounded-memory walks --------------------------------------------


async def test_a_ten_thousand_event_append_is_one_atomic_batch(pg_schema: str) -> None:
    async with await pg.fresh_store(pg_schema) as store:
        result = await store.append(AppendRequest.create({"big": 0}, _events("big", 10_000)))
        assert result.positions == tuple(range(1, 10_001))
        assert result.stream_versions == {"big": 10_000}
        events = await store.read_stream("big", from_version=9_990)
        assert [e.stream_version for e in events] == list(range(9_990, 10_001))
        assert await store.stream_version("big") == 10_000


async def test_walking_a_100k_event_log_holds_one_page_in_memory(pg_schema: str) -> None:
    # The 1,000,000-event walk is in benchmarks/walk_log.py; this is its test-sized twin.
    async with await pg.fresh_store(pg_schema) as store:
        for batch in range(10):
            stream = f"walk-{batch}"
            await store.append(AppendRequest.create({stream: 0}, _events(stream, 10_000, 200)))
        tracemalloc.start()
        try:
            count = 0
            last = 0
            async for event in store.iter_all(page_size=1_000):
                assert event.global_position == last + 1
                last = event.global_position
                count += 1
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert count == 100_000
    # 100,000 records of ~250 bytes of payload each would be well over 40 MB.
    assert peak < 8 * 1024 * 1024, f"peak {peak / 1e6:.1f} MB: the walk holds too much"


# -- append_many: the group-commit building block -------------------------------------


async def test_append_many_applies_requests_in_order_and_isolates_conflicts(
    pg_schema: str,
) -> None:
    async with await pg.fresh_store(pg_schema) as store:
        first = AppendRequest.create({"a": 0}, _events("a", 2))
        stale = AppendRequest.create({"a": 0, "b": 0}, _events("b", 1))  # a moved: conflict
        follows = AppendRequest.create({"a": 2}, _events("a", 1))  # sees first's events
        read_only = AppendRequest.create({"a": 3, "c": 0}, _events("c", 1))
        outcomes = await store.append_many([first, stale, follows, read_only])

    assert isinstance(outcomes[1], VersionConflict)
    assert (outcomes[1].stream_id, outcomes[1].expected, outcomes[1].actual) == ("a", 0, 2)
    ok = [o for i, o in enumerate(outcomes) if i != 1]
    assert [o.positions for o in ok] == [(1, 2), (3,), (4,)]  # type: ignore[union-attr]
    assert ok[2].stream_versions == {"a": 3, "c": 1}  # type: ignore[union-attr]


# -- migrations ---------------------------------------------------------------------


async def test_migrating_twice_applies_nothing_the_second_time(pg_schema: str) -> None:
    async with await pg.fresh_store(pg_schema) as store:
        assert await store.schema_version() == len(available_migrations())
        assert await store.migrate() == 0
        assert await store.schema_version() == len(available_migrations())


async def test_two_processes_migrating_one_schema_at_once_both_succeed(pg_schema: str) -> None:
    code = (
        "import asyncio, sys\n"
        "from eventcore.backends.postgres import PostgresConfig, PostgresEventStore\n"
        "async def main():\n"
        "    config = PostgresConfig.development(sys.argv[1], schema=sys.argv[2])\n"
        "    store = await PostgresEventStore.open(config, migrate=False)\n"
        "    print('ready', flush=True)\n"
        "    sys.stdin.readline()\n"
        "    print(await store.migrate())\n"
        "    await store.close()\n"
        "asyncio.run(main())\n"
    )
    procs = []
    for _ in range(2):
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            code,
            pg.PG_URL,
            pg_schema,
            cwd=REPO,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        assert proc.stdout is not None
        assert (await proc.stdout.readline()).strip() == b"ready"
        procs.append(proc)
    # Both are connected; release them together.
    outputs = await asyncio.gather(
        *(asyncio.wait_for(p.communicate(b"go\n"), timeout=60) for p in procs)
    )
    assert [p.returncode for p in procs] == [0, 0]
    assert sorted(int(out.decode()) for out, _ in outputs) == [0, len(available_migrations())]
    async with await pg.fresh_store(pg_schema) as store:
        assert await store.schema_version() == len(available_migrations())
        result = await store.append(AppendRequest.create({"s": 0}, _events("s", 1)))
        assert result.positions == (1,)


async def test_group_reads_answer_every_caller_with_its_own_streams(pg_schema: str) -> None:
    async with await pg.fresh_store(pg_schema, group_reads=True) as store:
        for n in range(6):
            stream = f"g-{n}"
            await store.append(AppendRequest.create({stream: 0}, _events(stream, n + 1)))
        reads = [
            store.read_streams([f"g-{n}", f"g-{(n + 1) % 6}"], from_versions={f"g-{n}": 2})
            for n in range(6)
        ] * 5
        results = await asyncio.gather(*reads)
        reader = store._group_reader  # private: the test checks that reads were shared
        assert reader is not None
        assert reader.queries < len(reads)
        for index, result in enumerate(results):
            n = index % 6
            first, second = f"g-{n}", f"g-{(n + 1) % 6}"
            assert list(result) == [first, second]
            assert [e.stream_version for e in result[first]] == list(range(2, n + 2))
            assert [e.stream_version for e in result[second]] == list(range(1, (n + 1) % 6 + 2))
