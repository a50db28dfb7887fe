"""Load generators: run an operation under a load shape and time every operation.

Two shapes:

- :class:`ClosedLoop`: ``concurrency`` tasks, each starting its next operation
  when its last one ends, for a time or a number of operations. Latency is the
  operation's own duration.
- :class:`OpenLoop`: operations *start on a schedule*, ``rate_per_s`` per second,
  whether or not earlier ones have finished. Latency is measured from the
  scheduled start, so time spent waiting to be started (a late dispatcher, a
  saturated store) counts: the coordinated-omission trap of closed loops, where a
  slow response also delays the next request and hides itself, is avoided.

Only eventcore's own errors (a refused transfer, retries exhausted, a store that
is unavailable) are counted as errors; anything else is a bug and propagates.
"""

from __future__ import annotations

import array
import asyncio
import gc
import itertools
import sys
import time
import tracemalloc
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Final, NamedTuple, TypeAlias

from eventcore.bench.results import Run
from eventcore.errors import EventCoreError


class Done(NamedTuple):
    """What one operation did: events written or read, and conflict retries."""

    events: int
    retries: int = 0


ONE_EVENT: Final = Done(1)

Operation: TypeAlias = Callable[[], Awaitable[Done]]


@dataclass(frozen=True, slots=True)
class ClosedLoop:
    """``concurrency`` tasks back to back, for ``seconds`` or ``operations`` in total."""

    concurrency: int
    seconds: float | None = None
    operations: int | None = None

    def __post_init__(self) -> None:
        if self.concurrency < 1:
            raise ValueError(f"concurrency must be >= 1, got {self.concurrency}")
        if (self.seconds is None) == (self.operations is None):
            raise ValueError("a closed loop runs for either seconds or operations")


@dataclass(frozen=True, slots=True)
class OpenLoop:
    """Operations started ``rate_per_s`` times a second for ``seconds``."""

    rate_per_s: float
    seconds: float

    @property
    def operations(self) -> int:
        return max(1, round(self.rate_per_s * self.seconds))


Load: TypeAlias = ClosedLoop | OpenLoop


class _Tally:
    """Latencies (compact: 8 bytes each), events, errors and retries of one run."""

    __slots__ = ("errors", "events", "latencies", "retries")

    def __init__(self) -> None:
        self.latencies = array.array("d")
        self.events = 0
        self.errors = 0
        self.retries = 0

    def record(self, seconds: float, done: Done) -> None:
        self.latencies.append(seconds)
        self.events += done.events
        self.retries += done.retries

    def run(self, elapsed: float, cpu_seconds: float) -> Run:
        return Run.measured(
            elapsed,
            self.latencies,
            events=self.events,
            errors=self.errors,
            retries=self.retries,
            cpu_seconds=cpu_seconds,
        )


async def run_load(operation: Operation, load: Load, *, trace_heap: bool = False) -> Run:
    """Run ``operation`` under ``load``; with ``trace_heap``, also measure the heap."""
    if not trace_heap:
        return await _drive(operation, load)
    return await _traced(operation, load)


async def _drive(operation: Operation, load: Load) -> Run:
    if isinstance(load, OpenLoop):
        return await _open_loop(operation, load)
    return await _closed_loop(operation, load)


async def _closed_loop(operation: Operation, load: ClosedLoop) -> Run:
    tally = _Tally()
    clock = time.perf_counter
    deadline = clock() + load.seconds if load.seconds is not None else float("inf")
    tickets = itertools.count()
    limit = load.operations if load.operations is not None else sys.maxsize

    async def worker() -> None:
        while clock() < deadline and next(tickets) < limit:
            started = clock()
            try:
                done = await operation()
            except EventCoreError:
                tally.errors += 1
                continue
            tally.record(clock() - started, done)

    started, cpu = clock(), time.process_time()
    async with asyncio.TaskGroup() as group:
        for _ in range(load.concurrency):
            group.create_task(worker())
    return tally.run(clock() - started, time.process_time() - cpu)


async def _open_loop(operation: Operation, load: OpenLoop) -> Run:
    tally = _Tally()
    clock = time.perf_counter
    interval = 1 / load.rate_per_s

    async def timed(scheduled: float) -> None:
        try:
            done = await operation()
        except EventCoreError:
            tally.errors += 1
            return
        tally.record(clock() - scheduled, done)

    started, cpu = clock(), time.process_time()
    async with asyncio.TaskGroup() as group:
        for n in range(load.operations):
            scheduled = started + n * interval
            delay = scheduled - clock()
            if delay > 0:
                await asyncio.sleep(delay)
            # Started late if the loop was busy: the lateness is counted, not hidden.
            group.create_task(timed(scheduled))
    return tally.run(clock() - started, time.process_time() - cpu)


async def _traced(operation: Operation, load: Load) -> Run:
    """Net heap growth over the run (after a collection) and its peak, by tracemalloc.

    Tracing starts here, after the caller's warm-up, so start-up allocations
    (imports, pools, caches filled once) are not counted. Allocations made in this
    module (the latency log) are left out of the growth: they are the harness's.
    """
    gc.collect()
    tracemalloc.start()
    try:
        run = await _drive(operation, load)
        gc.collect()
        _, peak = tracemalloc.get_traced_memory()
        snapshot = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    own = tracemalloc.Filter(inclusive=False, filename_pattern=__file__)
    growth = sum(stat.size for stat in snapshot.filter_traces([own]).statistics("filename"))
    return replace(run, heap_growth_bytes=growth, heap_peak_bytes=peak)


def reset_peak_rss() -> bool:
    """Reset the process's peak RSS, so the next reading covers only what follows.

    Linux allows it (writing 5 to /proc/self/clear_refs resets the high-water
    mark that getrusage reports); elsewhere the peak stays the process's lifetime
    peak, and this returns False.
    """
    try:
        with open("/proc/self/clear_refs", "w") as clear_refs:
            clear_refs.write("5")
    except OSError:
        return False
    return True


def peak_rss_bytes() -> int:
    """The peak resident set size since start (or since :func:`reset_peak_rss`)."""
    try:
        import resource
    except ImportError:  # pragma: no cover - not on POSIX
        return 0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024  # macOS: bytes, Linux: KiB
