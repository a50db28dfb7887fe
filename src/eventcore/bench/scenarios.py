"""The benchmark scenarios, as specs (what to run, under which load) and
workloads (the operation itself, on a prepared store).

Every command goes through :func:`~eventcore.bench.stores.command_runner` and every
store comes from :func:`~eventcore.bench.stores.open_backend`, so the scenarios
stay the same when speed mechanisms are switched on.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any, Final, Literal

from eventcore.bench.measure import ClosedLoop, Done, Load, OpenLoop, Operation
from eventcore.bench.results import Params, RatioBasis
from eventcore.bench.stores import command_runner, warm_cache
from eventcore.demo.bank import Deposit, MoneyDeposited, Transfer, bank_codec
from eventcore.projection import Projection, rebuild_projection
from eventcore.store import EventStore, ProjectionStore
from eventcore.types import AppendRequest, NewEvent, RecordedEvent, StreamId

SCENARIOS: Final = (
    "commands",
    "steady",
    "hot_set",
    "append",
    "transfers",
    "steady_transfers",
    "fold",
    "read_all",
    "replay",
    "memory",
    "open_loop",
)
DEFAULT_CONCURRENCY: Final = (1, 10, 50, 64, 100)
DEFAULT_BATCH_SIZES: Final = (1, 10, 100, 1000)
TARGET_TASKS: Final = 64  # the concurrency the speed targets are set at
# A warm cache is measured with one writer too: a command that needs no read is
# one round trip, which is what a single writer waits for.
STEADY_TASKS: Final = (1, TARGET_TASKS)

# Raw appends and pre-filled streams store real bank events, so that commands can
# fold them; encoded once, since the store, not the codec, is being measured. The
# append scenario's COPY baseline writes the same (eventcore.bench.baselines).
APPENDED_TYPE, APPENDED_PAYLOAD = bank_codec.encode(MoneyDeposited(1))
_FILL_CHUNK: Final = 1000
_OPENING_BALANCE: Final = 10**12


@dataclass(frozen=True, slots=True)
class Sizes:
    """How long and how big; :data:`QUICK_SIZES` is the ``--quick`` smoke run."""

    seconds: float = 0.75  # one measured run of a time-bounded scenario
    warmup_seconds: float = 0.25
    open_loop_seconds: float = 1.5
    rate_per_s: float = 1000.0
    accounts: int = 10_000  # many, so that random commands rarely conflict
    fold_events: int = 10_000
    folds_per_run: int = 5
    log_events: int = 100_000
    page_size: int = 1000
    memory_commands: int = 10_000
    hot_accounts: int = 1000  # hot_set: the accounts most transfers are between
    hot_share: float = 0.9  # hot_set: the share of transfers within the hot accounts


# The memory test is cut to 5,000 commands, so its 10,000-command target shows
# "not run" in a quick run rather than a figure measured on another size.
QUICK_SIZES: Final = Sizes(
    seconds=0.2,
    warmup_seconds=0.05,
    open_loop_seconds=0.5,
    folds_per_run=2,
    log_events=20_000,
    memory_commands=5_000,
)


@dataclass(frozen=True, slots=True)
class ScenarioSpec:
    """One scenario: its operation, its load, and how its baseline is loaded."""

    name: str
    label: str  # the name with what varies: "commands c=64", "append batch=1000"
    operation: str
    load: Load
    warmup: Load
    baseline_load: Load
    ratio_basis: RatioBasis
    trace_heap: bool = False
    batch_size: int | None = None
    baseline: Literal["insert", "walk_log", "copy"] = "insert"  # see eventcore.bench.baselines

    @property
    def concurrency(self) -> int | None:
        return self.load.concurrency if isinstance(self.load, ClosedLoop) else None

    def params(self, sizes: Sizes, store_options: dict[str, Any]) -> Params:
        load = self.load
        return Params(
            concurrency=self.concurrency,
            batch_size=self.batch_size,
            rate_per_s=load.rate_per_s if isinstance(load, OpenLoop) else None,
            duration_s=load.seconds,
            operations_per_run=load.operations,
            events_per_stream=sizes.fold_events if self.name == "fold" else None,
            log_events=sizes.log_events if self.name in ("read_all", "replay") else None,
            accounts=sizes.accounts if self.operation == "command" else None,
            warmup_s=sizes.warmup_seconds,
            store_options=store_options,
        )


def plan_scenarios(
    names: Sequence[str],
    concurrencies: Sequence[int],
    batch_sizes: Sequence[int],
    sizes: Sizes,
) -> list[ScenarioSpec]:
    """The scenarios to run, in a fixed order, for the names chosen."""
    unknown = sorted(set(names) - set(SCENARIOS))
    if unknown:
        raise ValueError(f"unknown scenarios {unknown}; choose from {', '.join(SCENARIOS)}")
    specs: list[ScenarioSpec] = []
    for name in SCENARIOS:
        if name == "commands" and name in names:
            specs += [_closed(sizes, "commands", "command", c, "operations") for c in concurrencies]
        elif name == "steady" and name in names:
            specs += [_steady_spec(sizes, tasks) for tasks in STEADY_TASKS]
        elif name == "append" and name in names:
            specs += [_append_spec(sizes, b) for b in batch_sizes]
        elif name in names:
            specs.append(_SINGLE_SPECS[name](sizes))
    return specs


def _closed(
    sizes: Sizes, name: str, operation: str, tasks: int, basis: RatioBasis, label: str = ""
) -> ScenarioSpec:
    """A time-bounded closed-loop scenario whose baseline runs at the same concurrency."""
    timed = ClosedLoop(tasks, seconds=sizes.seconds)
    warmup = ClosedLoop(tasks, seconds=sizes.warmup_seconds)
    label = label or f"{name} c={tasks}"
    return ScenarioSpec(name, label, operation, timed, warmup, timed, basis)


def _append_spec(sizes: Sizes, batch_size: int) -> ScenarioSpec:
    # One writer: the cost of an append of this size, back to back, against a
    # plain COPY of as many rows into a table like the events table (on PostgreSQL;
    # elsewhere the backend's insert).
    spec = _closed(sizes, "append", "append", 1, "events", f"append batch={batch_size}")
    return replace(spec, batch_size=batch_size, baseline="copy")


def _transfers_spec(sizes: Sizes) -> ScenarioSpec:
    return _closed(sizes, "transfers", "command", TARGET_TASKS, "operations")


def _steady_spec(sizes: Sizes, tasks: int) -> ScenarioSpec:
    # The commands of "commands c=N" once the cache is warm: every account is
    # opened and its state cached before the first run, as in a service that has
    # been up for a while (or warmed its cache at start).
    label = f"steady c={tasks} warm cache"
    return _closed(sizes, "steady", "command", tasks, "operations", label)


def _steady_transfers_spec(sizes: Sizes) -> ScenarioSpec:
    # "transfers c=64" with every account's state cached first.
    label = f"transfers c={TARGET_TASKS} warm cache"
    return _closed(sizes, "steady_transfers", "command", TARGET_TASKS, "operations", label)


def _hot_set_spec(sizes: Sizes) -> ScenarioSpec:
    share = round(sizes.hot_share * 100)
    label = f"hot_set c={TARGET_TASKS} {share}% on {sizes.hot_accounts}"
    return _closed(sizes, "hot_set", "command", TARGET_TASKS, "operations", label)


def _read_all_spec(sizes: Sizes) -> ScenarioSpec:
    label = f"read_all {sizes.log_events} events"
    return _closed(sizes, "read_all", "page", 1, "events", label)


def _replay_spec(sizes: Sizes) -> ScenarioSpec:
    # Counted: one operation rebuilds a projection from the whole log; its
    # yardstick is a bare iter_all walk of the same log, so the ratio is the share
    # of the reading speed the runner keeps (checkpoints, lease, handler calls).
    whole_log = ClosedLoop(1, operations=1)
    return ScenarioSpec(
        "replay",
        f"replay {sizes.log_events} events",
        "rebuild",
        load=whole_log,
        warmup=whole_log,
        baseline_load=whole_log,
        ratio_basis="events",
        baseline="walk_log",
    )


def _fold_spec(sizes: Sizes) -> ScenarioSpec:
    # Counted, not timed: each fold uses up one pre-filled stream.
    return ScenarioSpec(
        "fold",
        f"fold {sizes.fold_events} events",
        "command",
        load=ClosedLoop(1, operations=sizes.folds_per_run),
        warmup=ClosedLoop(1, operations=1),
        baseline_load=ClosedLoop(1, seconds=sizes.seconds),
        ratio_basis="operations",
    )


def _memory_spec(sizes: Sizes) -> ScenarioSpec:
    # The baseline runs the same count under tracemalloc too: its growth is the
    # noise floor, and its speed suffers the same tracing overhead.
    commands = ClosedLoop(TARGET_TASKS, operations=sizes.memory_commands)
    return ScenarioSpec(
        "memory",
        f"memory {sizes.memory_commands} cmds c={TARGET_TASKS}",
        "command",
        load=commands,
        warmup=ClosedLoop(TARGET_TASKS, operations=min(1000, sizes.memory_commands)),
        baseline_load=commands,
        ratio_basis="operations",
        trace_heap=True,
    )


def _open_loop_spec(sizes: Sizes) -> ScenarioSpec:
    scheduled = OpenLoop(sizes.rate_per_s, sizes.open_loop_seconds)
    return ScenarioSpec(
        "open_loop",
        f"open_loop {sizes.rate_per_s:g}/s",
        "command",
        load=scheduled,
        warmup=ClosedLoop(10, seconds=sizes.warmup_seconds),
        baseline_load=scheduled,
        ratio_basis="p50",
    )


_SINGLE_SPECS: Final[dict[str, Callable[[Sizes], ScenarioSpec]]] = {
    "hot_set": _hot_set_spec,
    "transfers": _transfers_spec,
    "steady_transfers": _steady_transfers_spec,
    "fold": _fold_spec,
    "read_all": _read_all_spec,
    "replay": _replay_spec,
    "memory": _memory_spec,
    "open_loop": _open_loop_spec,
}


async def prepare_workload(
    spec: ScenarioSpec, store: EventStore, sizes: Sizes, runs: int
) -> Operation:
    """Fill ``store`` as ``spec`` needs, for ``runs`` repetitions plus a warm-up,
    and return the operation to measure."""
    rng = random.Random(f"{spec.label}")  # repeatable account choices
    accounts = [f"account-{n}" for n in range(sizes.accounts)]
    if spec.name in ("commands", "memory", "open_loop"):
        return _deposits(store, accounts, rng)
    if spec.name == "steady":
        await _fill_streams(store, accounts, events_each=1, amount=_OPENING_BALANCE)
        await warm_cache(store, Deposit, accounts)
        return _deposits(store, accounts, rng)
    if spec.name in ("transfers", "hot_set", "steady_transfers"):
        await _fill_streams(store, accounts, events_each=1, amount=_OPENING_BALANCE)
        if spec.name == "steady_transfers":
            await warm_cache(store, Transfer, accounts)
        if spec.name == "hot_set":
            hot = accounts[: max(2, min(sizes.hot_accounts, len(accounts)))]
            return _hot_transfers(store, hot, accounts, sizes.hot_share, rng)
        return _transfers(store, accounts, rng)
    if spec.name == "append":
        return _appends(store, spec.batch_size or 1)
    if spec.name == "fold":
        folds = runs * (spec.load.operations or 1) + (spec.warmup.operations or 1)
        streams = [f"fold-{n}" for n in range(folds)]
        await _fill_streams(store, streams, events_each=sizes.fold_events)
        return _folds(store, streams, sizes.fold_events)
    if spec.name in ("read_all", "replay"):
        streams = [f"log-{n}" for n in range(max(1, sizes.log_events // _FILL_CHUNK))]
        await _fill_streams(store, streams, events_each=min(sizes.log_events, _FILL_CHUNK))
        if spec.name == "replay":
            return replay_into_memory(store)
        return _log_pages(store, sizes.page_size)
    raise ValueError(f"unknown scenario {spec.name!r}")


def _deposits(store: EventStore, accounts: Sequence[str], rng: random.Random) -> Operation:
    run = command_runner(store)

    async def deposit() -> Done:
        result = await run(Deposit(rng.choice(accounts), 1))
        return Done(result.events_written, result.attempts - 1)

    return deposit


def _transfers(store: EventStore, accounts: Sequence[str], rng: random.Random) -> Operation:
    run = command_runner(store)

    async def transfer() -> Done:
        source, target = rng.sample(accounts, 2)
        result = await run(Transfer(source, target, 1))
        return Done(result.events_written, result.attempts - 1)

    return transfer


def _hot_transfers(
    store: EventStore,
    hot: Sequence[str],
    accounts: Sequence[str],
    hot_share: float,
    rng: random.Random,
) -> Operation:
    """Transfers between two hot accounts ``hot_share`` of the time, else between
    any two: hot entities, the workload a state cache is for."""
    run = command_runner(store)

    async def transfer() -> Done:
        source, target = rng.sample(hot if rng.random() < hot_share else accounts, 2)
        result = await run(Transfer(source, target, 1))
        return Done(result.events_written, result.attempts - 1)

    return transfer


def _appends(store: EventStore, batch_size: int) -> Operation:
    """Raw appends of ``batch_size`` events to a stream at a known version. Each
    stream in use is held by one task at a time, so appends never conflict."""
    idle: list[tuple[StreamId, int]] = []
    fresh_names = (StreamId(f"batch-{n}") for n in itertools.count())

    async def append() -> Done:
        stream, version = idle.pop() if idle else (next(fresh_names), 0)
        events = [NewEvent(stream, APPENDED_TYPE, APPENDED_PAYLOAD) for _ in range(batch_size)]
        result = await store.append(AppendRequest.create([(stream, version)], events))
        idle.append((stream, result.stream_versions[stream]))
        return Done(batch_size)

    return append


def _folds(store: EventStore, streams: Sequence[str], events_each: int) -> Operation:
    """Each fold runs a command over a stream not touched before, so it folds all
    ``events_each`` events even where a state cache would remember a stream."""
    unused = iter(streams)
    run = command_runner(store)

    async def fold() -> Done:
        stream = next(unused, None)
        if stream is None:
            raise RuntimeError("the fold scenario ran out of pre-filled streams")
        result = await run(Deposit(stream, 1))
        return Done(events_each, result.attempts - 1)  # counts the events folded

    return fold


def _log_pages(store: EventStore, page_size: int) -> Operation:
    """Page through the whole log with read_all(after=P, limit=page_size); at its
    end, start again from the beginning."""
    after = 0

    async def read_page() -> Done:
        nonlocal after
        page = await store.read_all(after=after, limit=page_size)
        after = page[-1].global_position if len(page) == page_size else 0
        return Done(len(page))

    return read_page


class _StreamVersions(Projection):
    """An in-memory read model: each stream's last version (idempotent)."""

    name = "bench-replay"

    def __init__(self) -> None:
        self.versions: dict[str, int] = {}

    async def handle(self, event: RecordedEvent) -> None:
        self.versions[event.stream_id] = event.stream_version

    async def reset(self) -> None:
        self.versions.clear()


def replay_into_memory(store: EventStore) -> Operation:
    """Rebuild an in-memory projection from the whole log, with the runner's
    default options, as an operator's ``rebuild`` would."""
    if not isinstance(store, ProjectionStore):
        raise ValueError(f"the replay scenario needs checkpoints and leases, got {store!r}")
    projection = _StreamVersions()

    async def replay() -> Done:
        status = await rebuild_projection(store, projection)
        return Done(status.position)  # every event is handled: positions are dense

    return replay


async def _fill_streams(
    store: EventStore, streams: Sequence[str], *, events_each: int, amount: int = 1
) -> None:
    """Give each stream ``events_each`` deposits, in appends of up to 1,000 events."""
    if events_each > 1:
        for stream in streams:
            await _fill_one(store, StreamId(stream), events_each)
        return
    # One event each: many streams per append.
    event_type, payload = bank_codec.encode(MoneyDeposited(amount))
    for start in range(0, len(streams), _FILL_CHUNK):
        chunk = [StreamId(s) for s in streams[start : start + _FILL_CHUNK]]
        events = [NewEvent(s, event_type, payload) for s in chunk]
        await store.append(AppendRequest.create([(s, 0) for s in chunk], events))


async def _fill_one(store: EventStore, stream: StreamId, events: int) -> None:
    version = 0
    while version < events:
        size = min(_FILL_CHUNK, events - version)
        batch = [NewEvent(stream, APPENDED_TYPE, APPENDED_PAYLOAD) for _ in range(size)]
        await store.append(AppendRequest.create([(stream, version)], batch))
        version += size
