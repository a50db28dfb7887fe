"""Server and client CPU per append under the store's group commit.

    python benchmarks/append_server_cpu.py [--appends 20000] [--tasks 64]
                                           [--streams 10000] [--analyze]
                                           [--max-in-flight N] [--max-batch N]
                                           [--streams-per-append K]
                                           [--dsn postgresql://...]

``--tasks`` tasks append one event each, again and again, to random streams of
``--streams`` (each task owns its own streams and knows their versions, so no
append conflicts), through ``PostgresEventStore.append`` and its group commit:
the store and the server alone, no executor, no state cache. With
``--streams-per-append 2`` each append expects two of the task's streams and
writes an event to each (the shape of a transfer between two accounts). After a warm-up of
50 appends a task it prints appends/s of wall time, the client's CPU per append
(this process) and the server's (every process of the PostgreSQL server: the
live ones' own time plus what the postmaster has collected from children that
exited). ``--analyze`` runs ANALYZE on the streams table before the measured
part, as autovacuum would on a store that has run a while.

``--max-in-flight`` and ``--max-batch`` change the store's group-commit
settings (:class:`~eventcore.backends.GroupCommitSettings`; by default one
batch under way, 256 appends at most each). It also prints the batches'
median size, how long a batch was under way (``append_many`` called to answered,
the client's encoding included), and how long after one batch was answered the
next was sent: the time the server had nothing to do.

Server CPU is read from ``/proc``, so the server must run on this machine
(Linux); the figure includes whatever else the server did meanwhile.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import random
import statistics
import time
import uuid
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import asyncpg

from eventcore.backends import GroupCommitSettings
from eventcore.backends.postgres import PostgresConfig, PostgresEventStore
from eventcore.store import AppendOutcome
from eventcore.types import AppendRequest, NewEvent, StreamId

_TICKS_PER_SECOND = os.sysconf("SC_CLK_TCK")


def _stat_fields(pid: int) -> list[str]:
    text = Path(f"/proc/{pid}/stat").read_text()
    return text[text.rindex(")") + 2 :].split()  # after "pid (comm) "; comm may hold spaces


def server_cpu_seconds(postmaster: int) -> float:
    """The server's CPU so far: its live processes' user and system time, plus the
    postmaster's collected children's (backends that exited)."""
    fields = _stat_fields(postmaster)
    ticks = int(fields[13]) + int(fields[14])  # cutime, cstime
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = _stat_fields(int(entry.name))
        except (FileNotFoundError, ProcessLookupError):
            continue  # exited meanwhile
        if int(entry.name) == postmaster or int(fields[1]) == postmaster:  # ppid
            ticks += int(fields[11]) + int(fields[12])  # utime, stime
    return ticks / _TICKS_PER_SECOND


class _TimedBatches(PostgresEventStore):
    """The store, noting when each ``append_many`` (one group-commit batch) was
    called and answered, and its size."""

    batches: list[tuple[float, float, int]]

    async def append_many(self, requests: Sequence[AppendRequest]) -> list[AppendOutcome]:
        called = time.perf_counter()
        try:
            return await super().append_many(requests)
        finally:
            self.batches.append((called, time.perf_counter(), len(requests)))


def _batch_report(batches: list[tuple[float, float, int]]) -> str:
    if len(batches) < 2:
        return "fewer than two batches"
    sizes = statistics.median(size for _, _, size in batches)
    under_way = statistics.median(answered - called for called, answered, _ in batches)
    gaps = [later[0] - earlier[1] for earlier, later in itertools.pairwise(batches)]
    return (
        f"batches: median {sizes:g} appends, under way {under_way * 1e3:.2f} ms,"
        f" next sent {statistics.median(gaps) * 1e3:.2f} ms after an answer (medians)"
    )


async def main(
    dsn: str,
    appends: int,
    tasks: int,
    stream_count: int,
    analyze: bool,
    group_commit: GroupCommitSettings,
    streams_per_append: int = 1,
) -> None:
    schema = f"bench_cpu_{uuid.uuid4().hex[:8]}"
    raw = await asyncpg.connect(dsn)
    backend = await raw.fetchval("SELECT pg_backend_pid()")
    postmaster = int(_stat_fields(backend)[1])
    config = PostgresConfig(dsn=dsn, schema=schema, group_commit=group_commit)
    store = await _TimedBatches.open(config)
    assert isinstance(store, _TimedBatches)
    store.batches = []
    try:
        streams = [StreamId(f"account-{n}") for n in range(stream_count)]
        versions = dict.fromkeys(streams, 0)
        for start in range(0, stream_count, 500):
            opened = streams[start : start + 500]
            await store.append_many(
                [AppendRequest.create({s: 0}, [NewEvent(s, "Opened", b"{}")]) for s in opened]
            )
        versions.update(dict.fromkeys(streams, 1))
        owned = [streams[task::tasks] for task in range(tasks)]

        async def worker(task: int, count: int) -> None:
            rng = random.Random(task)
            for _ in range(count):
                chosen = rng.sample(owned[task], streams_per_append)
                events = [NewEvent(s, "Deposited", b'{"amount":100}') for s in chosen]
                await store.append(AppendRequest.create({s: versions[s] for s in chosen}, events))
                for stream in chosen:
                    versions[stream] += 1

        await asyncio.gather(*(worker(task, 50) for task in range(tasks)))
        if analyze:
            await raw.execute(f'ANALYZE "{schema}".streams')
        each = appends // tasks
        server = server_cpu_seconds(postmaster)
        client = time.process_time()
        wall = time.perf_counter()
        await asyncio.gather(*(worker(task, each) for task in range(tasks)))
        wall = time.perf_counter() - wall
        client = time.process_time() - client
        server = server_cpu_seconds(postmaster) - server
        done = each * tasks
        print(
            f"{done / wall:8,.0f} appends/s   client {client / done * 1e6:6.1f} µs/append"
            f"   server {server / done * 1e6:6.1f} µs/append   ({done:,} appends, {tasks} tasks)"
        )
        print(_batch_report(store.batches))
    finally:
        await store.close()
        await raw.execute(f'DROP SCHEMA "{schema}" CASCADE')
        await raw.close()


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--appends", type=_positive, default=20_000)
    parser.add_argument("--tasks", type=_positive, default=64)
    parser.add_argument("--streams", type=_positive, default=10_000)
    parser.add_argument("--analyze", action="store_true")
    parser.add_argument("--max-in-flight", type=int, help="the store's default: 1")
    parser.add_argument("--max-batch", type=int, help="the store's default: 256")
    parser.add_argument("--streams-per-append", type=_positive, default=1)
    parser.add_argument("--dsn", default="postgresql://postgres@127.0.0.1:5432/test")
    options = parser.parse_args()
    if options.appends < options.tasks or options.streams < options.tasks * (
        options.streams_per_append
    ):
        parser.error(
            f"--appends ({options.appends}) must be at least --tasks ({options.tasks}), and"
            f" --streams ({options.streams}) at least --tasks times --streams-per-append"
            f" ({options.streams_per_append}): each task appends to streams of its own"
        )
    settings = PostgresConfig().group_commit
    if options.max_in_flight is not None:
        settings = replace(settings, max_in_flight=options.max_in_flight)
    if options.max_batch is not None:
        settings = replace(settings, max_batch=options.max_batch)
    asyncio.run(
        main(
            options.dsn,
            options.appends,
            options.tasks,
            options.streams,
            options.analyze,
            settings,
            options.streams_per_append,
        )
    )
