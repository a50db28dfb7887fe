"""Prometheus metrics for eventcore (the ``metrics`` extra: ``prometheus_client``).

::

    registry = CollectorRegistry()
    app = Application(store, observers=[PrometheusObserver(registry)])

The metrics go on the registry given (a fresh one by default, never the global
registry unless it is passed). Labels are bounded: command type names, outcomes,
store operation names, projection names; stream ids never. See
docs/operations.md for the full list.

The hooks run on every command, so they do as little as they can: the three that
run for every command (:meth:`~PrometheusObserver.command_executed`,
:meth:`~PrometheusObserver.events_appended`,
:meth:`~PrometheusObserver.store_operation`) only append what they were told to
a list, and the numbers are folded in from those lists at scrape time, or when a
list reaches ``_FOLD_AT`` entries (so memory stays bounded without scrapes). The
registry reads the numbers through a collector (:class:`_Exposition`). That
costs a fraction of updating ``prometheus_client`` metric objects, whose every
update takes a lock and walks the buckets in Python.

Thread safety: hooks may be called from several threads (an application's event
loop, a projection running on a loop of its own in another thread, a store's
group committer). ``list.append`` is one indivisible operation (under the GIL,
and in a free-threaded build, where a list locks itself), so the buffering hooks
take no lock. Folding takes the observer's lock and removes exactly the entries
it read (``del entries[:n]``), so an entry appended meanwhile by another thread
stays for the next fold. The hooks that are not per command update their numbers
under the lock, and a scrape folds and copies under it too, which gives it a
consistent view (a histogram's count always equals its +Inf bucket).

Timestamps stay exact: an append is stamped with ``time.perf_counter`` (a
monotonic clock) when it is reported (active streams count from it), not when it
is folded.

When it is an application's only observer, the executor does not call the hooks
for a successful command: it writes the command's figures (its latency, the
latency of its reads and appends, the streams and events it wrote) straight into
the observer's :class:`~eventcore.observe.CommandRecording`, list appends and
nothing else, and they are folded in like the hooks' buffers. A fold counts a
latency buffer in bulk (sorted once, then one bisection per bucket bound), which
costs a fraction of counting value by value.

A series' created time is when it was first folded, which is never after the
scrape that first shows it.
"""

from __future__ import annotations

import threading
import time
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterator, Sequence
from operator import itemgetter
from typing import Final, TypeVar, cast

from prometheus_client import CollectorRegistry
from prometheus_client import metrics as _client_metrics
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from eventcore.observe import CommandRecording, CommandReport, Observer, RecentStreams
from eventcore.performance import process_memory_bytes

__all__ = ["PrometheusObserver"]

# How many reports a hook buffers before it folds them in (a scrape folds them too):
# a few tens of kB at most, and the cost of a fold spread over hundreds of reports.
_FOLD_AT: Final = 256

# How prometheus_client writes a bucket's bound ("0.0001", "1.0", "+Inf"); untyped there.
_bound_label = cast("Callable[[float], str]", floatToGoString)
T = TypeVar("T")

# Commands and store calls run from well under a millisecond (memory) to seconds
# (a loaded database): the default buckets stop too early at the low end.
LATENCY_BUCKETS: Final = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)
BATCH_BUCKETS: Final = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)


class _Counter:
    """One counter series: its value and when it was first counted."""

    __slots__ = ("created", "value")

    def __init__(self) -> None:
        self.value = 0.0
        self.created = time.time()


class _Histogram:
    """One histogram series: how many values fell in each bucket (not cumulative:
    one list slot is bumped per value; the scrape sums them up), and their sum."""

    __slots__ = ("bounds", "counts", "created", "sum")

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # the last one is +Inf
        self.sum = 0.0
        self.created = time.time()

    def observe(self, value: float) -> None:
        # A bucket counts the values <= its bound: the first bound >= value.
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value

    def observe_all(self, values: list[float]) -> None:
        """Count every value of ``values`` (which this sorts): one bisection per
        bound instead of one per value."""
        self.sum += sum(values)
        values.sort()
        counts, below = self.counts, 0
        for slot, bound in enumerate(self.bounds):
            within = bisect_right(values, bound)  # the values <= bound
            counts[slot] += within - below
            below = within
        counts[-1] += len(values) - below


class PrometheusObserver(Observer):
    """An observer that keeps eventcore's metrics on a Prometheus registry.

    ``active_window`` is how recent a write must be for its stream to count as
    active (seconds); at most ``max_tracked_streams`` are remembered for that.
    """

    # Its hooks only append to lists and count numbers they were given: they raise
    # nothing, so when it is an application's only observer, it is called directly
    # (see ObserverGroup.direct). A subclass is not trusted unless it says so too.
    _raises_nothing = True
    # And it counts a successful command from what the executor writes into its
    # CommandRecording (see ObserverGroup.recording); a subclass does not, unless
    # it says so too.
    _takes_recordings = True

    def __init__(
        self,
        registry: CollectorRegistry | None = None,
        *,
        namespace: str = "eventcore",
        active_window: float = 60.0,
        max_tracked_streams: int = 100_000,
    ) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        # perf_counter: the executor's clock, so the end of a recorded append stamps
        # its streams without another clock read (it is monotonic too).
        self._recent = RecentStreams(active_window, max_tracked_streams, _clock)
        self._lock = threading.Lock()
        # Series by label values, created when first reported (the values are bounded).
        self._commands: dict[tuple[str, str], tuple[_Counter, _Histogram]] = {}
        self._command_seconds: dict[str, _Histogram] = {}
        # The "success" series of _commands by command type alone: a recorded
        # command is a success, and its fold skips building the key.
        self._successes: dict[str, tuple[_Counter, _Histogram]] = {}
        self._store_seconds: dict[str, _Histogram] = {}
        self._store_errors: dict[str, _Counter] = {}
        self._projection_failures: dict[str, _Counter] = {}
        self._projection_position: dict[str, float] = {}
        self._projection_lag: dict[str, float] = {}
        self._events = _Counter()
        self._conflicts = _Counter()
        self._batch_size = _Histogram(BATCH_BUCKETS)
        # What the per-command hooks reported and no fold has counted yet.
        self._reports: list[CommandReport] = []
        self._store_calls: list[tuple[str, float, bool]] = []  # operation, seconds, failed
        # What the executor wrote for successful commands (see CommandRecording),
        # and where events_appended buffers too.
        self._recording = CommandRecording(self._fold, _FOLD_AT)
        self.registry.register(
            _Exposition(self, namespace, f"{active_window:g}", max_tracked_streams)
        )

    def command_executed(self, report: CommandReport) -> None:
        reports = self._reports
        reports.append(report)  # a report is frozen: it can wait for the fold
        if len(reports) >= _FOLD_AT:
            self._fold()

    def events_appended(self, stream_ids: tuple[str, ...], count: int) -> None:
        # Into the list the executor writes its own appends to: one list, in the
        # order the appends were timed, is what active streams are counted from.
        appends = self._recording.appends
        appends.append((stream_ids, count, _clock()))
        if len(appends) >= _FOLD_AT:
            self._fold()

    def store_operation(self, operation: str, seconds: float, error: Exception | None) -> None:
        # Not the error itself: its traceback would keep the failed call's frames alive.
        calls = self._store_calls
        calls.append((operation, seconds, error is not None))
        if len(calls) >= _FOLD_AT:
            self._fold()

    def conflict_retried(self, stream_id: str, attempt: int, delay: float) -> None:
        with self._lock:
            self._conflicts.value += 1

    def batch_committed(self, size: int) -> None:
        with self._lock:
            self._batch_size.observe(size)

    def projection_advanced(self, name: str, position: int, head: int) -> None:
        with self._lock:
            self._projection_position[name] = float(position)
            self._projection_lag[name] = float(max(0, head - position))

    def projection_failed(self, name: str, position: int, error: Exception) -> None:
        with self._lock:
            _counter(self._projection_failures, name).value += 1

    def _fold(self) -> None:
        with self._lock:
            self._fold_locked()

    def _fold_locked(self) -> None:
        """Count what the hooks and the executor buffered (the caller holds the lock)."""
        bounds = LATENCY_BUCKETS
        commands = self._commands
        for report in _take(self._reports):
            # Each value inline, with no method call: a call per value would cost
            # about as much as the rest of the work on it.
            key = (report.command_type, report.outcome)
            counter, histogram = commands.get(key) or self._command_series(key)
            counter.value += 1
            seconds = report.seconds
            histogram.counts[bisect_left(bounds, seconds)] += 1
            histogram.sum += seconds
        recording = self._recording
        self._fold_successes(_take(recording.successes))
        appends = _take(recording.appends)
        if appends:
            self._events.value += sum(map(itemgetter(1), appends))
            self._recent.touch_each(
                list(map(itemgetter(0), appends)), list(map(itemgetter(2), appends))
            )
        series = self._store_seconds
        for operation, latencies in (
            ("read_streams", _take(recording.read_seconds)),
            ("append", _take(recording.append_seconds)),
        ):
            if latencies:
                (series.get(operation) or self._store_series(operation)).observe_all(latencies)
        for operation, seconds, failed in _take(self._store_calls):
            latency = series.get(operation) or self._store_series(operation)
            latency.counts[bisect_left(bounds, seconds)] += 1
            latency.sum += seconds
            if failed:
                _counter(self._store_errors, operation).value += 1

    def _fold_successes(self, successes: list[tuple[str, float]]) -> None:
        """Count successful commands the executor recorded: (type, seconds) pairs."""
        if not successes:
            return
        kinds = set(map(itemgetter(0), successes))
        if len(kinds) > 1:  # several command types: one latency list each
            by_kind: dict[str, list[float]] = {kind: [] for kind in kinds}
            for kind, seconds in successes:
                by_kind[kind].append(seconds)
        else:
            by_kind = {kinds.pop(): list(map(itemgetter(1), successes))}
        for kind, latencies in by_kind.items():
            counter, histogram = self._successes.get(kind) or self._success_series(kind)
            counter.value += len(latencies)
            histogram.observe_all(latencies)

    def _success_series(self, command_type: str) -> tuple[_Counter, _Histogram]:
        key = (command_type, "success")
        series = self._commands.get(key) or self._command_series(key)
        self._successes[command_type] = series
        return series

    def _store_series(self, operation: str) -> _Histogram:
        histogram = self._store_seconds[operation] = _Histogram(LATENCY_BUCKETS)
        return histogram

    def _command_series(self, key: tuple[str, str]) -> tuple[_Counter, _Histogram]:
        # The latency histogram is by command type only: outcomes share it.
        histogram = self._command_seconds.get(key[0])
        if histogram is None:
            histogram = self._command_seconds[key[0]] = _Histogram(LATENCY_BUCKETS)
        series = self._commands[key] = (_Counter(), histogram)
        return series


_clock = time.perf_counter


def _take(entries: list[T]) -> list[T]:
    """The entries of ``entries``, removed from it; one appended meanwhile (by
    another thread) is neither taken nor lost."""
    count = len(entries)
    taken = entries[:count]
    del entries[:count]
    return taken


def _counter(series: dict[str, _Counter], label: str) -> _Counter:
    counter = series.get(label)
    if counter is None:
        counter = series[label] = _Counter()
    return counter


class _Exposition(Collector):
    """What the registry reads at scrape time: the observer's numbers as metric
    families, with the names, help texts, labels and buckets eventcore has always
    exposed (they were ``prometheus_client`` metric objects before)."""

    def __init__(
        self, observer: PrometheusObserver, namespace: str, window: str, tracked: int
    ) -> None:
        self._observer = observer
        self._prefix = f"{namespace}_" if namespace else ""
        self._active_help = (
            f"Streams written within the last {window} s (at most {tracked} tracked)"
        )

    def describe(self) -> list[Metric]:
        """The families without samples: lets the registry refuse a second observer
        with the same names, without reading any value."""
        return list(self._families(None))

    def collect(self) -> Iterator[Metric]:
        observer = self._observer
        with observer._lock:  # a consistent copy; the families are built outside it
            observer._fold_locked()
            copy = _Copy(observer)
        return self._families(copy)

    def _families(self, copy: _Copy | None) -> Iterator[Metric]:
        p = self._prefix
        commands = CounterMetricFamily(
            f"{p}commands", "Commands executed, by type and outcome", labels=["command", "outcome"]
        )
        command_seconds = HistogramMetricFamily(
            f"{p}command_duration_seconds",
            "Time from start to outcome of a command, retries included",
            labels=["command"],
        )
        events = CounterMetricFamily(f"{p}events_written", "Events appended by commands")
        conflicts = CounterMetricFamily(
            f"{p}version_conflicts_retried", "Version conflicts after which a command ran again"
        )
        store_seconds = HistogramMetricFamily(
            f"{p}store_operation_duration_seconds",
            "Time of a store call, by operation",
            labels=["operation"],
        )
        store_errors = CounterMetricFamily(
            f"{p}store_operation_errors",
            "Store calls that raised, by operation",
            labels=["operation"],
        )
        batch_size = HistogramMetricFamily(
            f"{p}group_commit_batch_size", "Appends sent in one group-commit transaction"
        )
        position = GaugeMetricFamily(
            f"{p}projection_position",
            "Last log position a projection handled",
            labels=["projection"],
        )
        lag = GaugeMetricFamily(
            f"{p}projection_lag_events",
            "Events in the log a projection has not handled yet",
            labels=["projection"],
        )
        failures = CounterMetricFamily(
            f"{p}projection_failures", "Failures of a projection's handler", labels=["projection"]
        )
        active = GaugeMetricFamily(f"{p}active_streams", self._active_help)
        memory = GaugeMetricFamily(f"{p}process_memory_bytes", "Resident memory of this process")
        if copy is not None:
            for (command, outcome), counter in copy.commands:
                _add_counter(commands, [command, outcome], counter)
            for command, histogram in copy.command_seconds:
                _add_histogram(command_seconds, {"command": command}, histogram)
            _add_counter(events, [], copy.events)
            _add_counter(conflicts, [], copy.conflicts)
            for operation, histogram in copy.store_seconds:
                _add_histogram(store_seconds, {"operation": operation}, histogram)
            for operation, counter in copy.store_errors:
                _add_counter(store_errors, [operation], counter)
            _add_histogram(batch_size, {}, copy.batch_size)
            for name, value in copy.position:
                position.add_metric([name], value)
            for name, value in copy.lag:
                lag.add_metric([name], value)
            for name, counter in copy.failures:
                _add_counter(failures, [name], counter)
            active.add_metric([], copy.active)
            memory.add_metric([], float(process_memory_bytes()))
        yield from (commands, command_seconds, events, conflicts, store_seconds, store_errors)
        yield from (batch_size, position, lag, failures, active, memory)


_Values = tuple[float, float]  # a counter: value, created
_Buckets = tuple[Sequence[float], list[int], float, float]  # bounds, counts, sum, created


class _Copy:
    """The observer's numbers at one instant (taken under its lock)."""

    def __init__(self, observer: PrometheusObserver) -> None:
        self.commands = [(key, _values(series[0])) for key, series in observer._commands.items()]
        self.command_seconds = _buckets_of(observer._command_seconds)
        self.events = _values(observer._events)
        self.conflicts = _values(observer._conflicts)
        self.store_seconds = _buckets_of(observer._store_seconds)
        self.store_errors = _values_of(observer._store_errors)
        self.batch_size = _buckets(observer._batch_size)
        self.position = list(observer._projection_position.items())
        self.lag = list(observer._projection_lag.items())
        self.failures = _values_of(observer._projection_failures)
        self.active = float(observer._recent.count())


def _values(counter: _Counter) -> _Values:
    return counter.value, counter.created


def _values_of(series: dict[str, _Counter]) -> list[tuple[str, _Values]]:
    return [(label, _values(counter)) for label, counter in series.items()]


def _buckets(histogram: _Histogram) -> _Buckets:
    return histogram.bounds, list(histogram.counts), histogram.sum, histogram.created


def _buckets_of(series: dict[str, _Histogram]) -> list[tuple[str, _Buckets]]:
    return [(label, _buckets(histogram)) for label, histogram in series.items()]


def _created_series() -> bool:
    # prometheus_client's own switch (disable_created_metrics() or the
    # PROMETHEUS_DISABLE_CREATED_SERIES variable), so these series follow it too.
    return bool(getattr(_client_metrics, "_use_created", True))


def _add_counter(family: CounterMetricFamily, labels: list[str], values: _Values) -> None:
    value, created = values
    family.add_metric(labels, value, created=created if _created_series() else None)


def _add_histogram(
    family: HistogramMetricFamily, labels: dict[str, str], buckets: _Buckets
) -> None:
    bounds, counts, total, created = buckets
    cumulative, running = [], 0
    for bound, count in zip((*bounds, float("inf")), counts, strict=True):
        running += count
        cumulative.append((_bound_label(bound), float(running)))
    family.add_metric(list(labels.values()), cumulative, total)
    if _created_series():  # HistogramMetricFamily.add_metric has no created= (yet)
        family.add_sample(f"{family.name}_created", labels, created)
