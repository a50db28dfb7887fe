"""Server and client CPU per append under the store's group commit.

    python benchmarks/append_server_cpu.py [--appends 20000] [--tasks 64]
                                           [--streams 10000] [--analyze]
                                           [--dsn postgresql://...]

``--tasks`` tasks append one event each, again and again, to random streams of
``--streams`` (each task owns its own streams and knows their versions, so no
append conflicts), through ``PostgresEventStore.append`` and its group commit:
the store and the server alone, no executor, no state cache. After a warm-up of
50 appends a task it prints appends/s of wall time, the client's CPU per append
(this process) and the server's (every process of the PostgreSQL server: the
live ones' own time plus what the postmaster has collected from children that
exited). ``--analyze`` runs ANALYZE on the streams table before the measured
part, as autovacuum would on a store that has run a while.

Server CPU is read from ``/proc``, so the server must run on this machine
(Linux); the figure includes whatever else the server did meanwhile.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import time
import uuid
from pathlib import Path

import asyncpg

from eventcore.backends.postgres import PostgresConfig, PostgresEventStore
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


async def main(dsn: str, appends: int, tasks: int, stream_count: int, analyze: bool) -> None:
    schema = f"bench_cpu_{uuid.uuid4().hex[:8]}"
    raw = await asyncpg.connect(dsn)
    backend = await raw.fetchval("SELECT pg_backend_pid()")
    postmaster = int(_stat_fields(backend)[1])
    store = await PostgresEventStore.open(PostgresConfig(dsn=dsn, schema=schema))
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
                stream = rng.choice(owned[task])
                event = NewEvent(stream, "Deposited", b'{"amount":100}')
                await store.append(AppendRequest.create({stream: versions[stream]}, [event]))
                versions[stream] += 1

        await asyncio.gather(*(worker(task, 50) for task in range(tasks)))
        if analyze:
            await raw.execute(f'ANALYZE "{schema}".streams')
        each = appends // tasks
        server, client, wall = (
            server_cpu_seconds(postmaster),
            time.process_time(),
            time.perf_counter(),
        )
        await asyncio.gather(*(worker(task, each) for task in range(tasks)))
        wall = time.perf_counter() - wall
        client = time.process_time() - client
        server = server_cpu_seconds(postmaster) - server
        done = each * tasks
        print(
            f"{done / wall:8,.0f} appends/s   client {client / done * 1e6:6.1f} µs/append"
            f"   server {server / done * 1e6:6.1f} µs/append   ({done:,} appends, {tasks} tasks)"
        )
    finally:
        await store.close()
        await raw.execute(f'DROP SCHEMA "{schema}" CASCADE')
        await raw.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--appends", type=int, default=20_000)
    parser.add_argument("--tasks", type=int, default=64)
    parser.add_argument("--streams", type=int, default=10_000)
    parser.add_argument("--analyze", action="store_true")
    parser.add_argument("--dsn", default="postgresql://postgres@127.0.0.1:5432/test")
    options = parser.parse_args()
    asyncio.run(main(options.dsn, options.appends, options.tasks, options.streams, options.analyze))
