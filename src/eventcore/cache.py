"""The state cache: folded command state kept between executions.

With a cache, :func:`eventcore.execute` remembers the state it folded and the
stream versions it was built from. The next execution that folds the same
streams the same way does not read them again:

- by default (``optimistic=True``) it decides straight from the cached state and
  appends with the cached versions; if any stream moved meanwhile (another task or
  process wrote), the version check refuses the append and the command is re-run
  after reading only the events newer than the cache;
- a decision that writes nothing — ``handle`` raising
  :class:`~eventcore.errors.BusinessRuleViolation` or returning no events — is
  never reported on cached state alone: it is re-checked after such a catch-up
  read, since nothing else would have caught a stale cache;
- with ``optimistic=False`` every execution reads the newer events first.

So a cached state can never cause a wrong write or a wrong refusal: at worst it
costs one extra round trip. Entries are evicted least-recently-used beyond
``max_entries``.

What an entry is keyed by:

- the **fold**: the ``initial_state``, ``apply``, ``resolve_streams`` (and
  ``merge_states``) functions the class has. Command classes that inherit the same
  ones — ``Deposit`` and ``Transfer`` of one account base class, say — share
  entries; a subclass that overrides one of them gets entries of its own;
- the **streams**: the declared stream set, or, for a class with
  ``state_per_stream = True`` (see :class:`~eventcore.command.Command`), each
  stream on its own. A per-stream class combines the entries of its streams with
  its ``merge_states``, so a transfer from ``a`` to ``b`` reuses what a deposit to
  ``a`` and a transfer from ``b`` to ``c`` left behind.

Only command classes that opt in (``reuses_state = True``, see
:class:`~eventcore.command.Command`) may be run with a cache: a cached state was
folded by an earlier command — possibly of another class sharing the fold — so
``initial_state``, ``apply``, ``resolve_streams`` and ``merge_states`` must depend
only on the events (never on the command's fields or on what differs between the
classes sharing them); ``apply`` must return a new state rather than change the
one it is given; and the state must not depend on how events of *different*
streams interleave — catching up applies a stream's newer events after the older
events of every stream. A per-stream class also promises that folding its
streams one after another equals ``merge_states`` of each stream folded alone.
The version check cannot catch a command that breaks these rules, so tests can:
``StateCache(verify=True)`` (or a sample rate such as ``verify=0.1``) folds the
streams afresh, one after another, up to the cached versions, on a cache hit and
raises :class:`~eventcore.errors.StateReuseMismatch` if the state decided on
differs (states must compare by value, as dataclasses and msgspec Structs do).

:meth:`StateCache.warm` fills entries from a read of the streams, before any
command ran. :meth:`StateCache.stats` counts hits, misses, stale entries (an
optimistic append refused because a stream had moved) and re-checks.

A cache describes one store's streams: the first :func:`~eventcore.execute` (or
``warm``) binds it to its store, and using it with another store is refused.
"""

from __future__ import annotations

import math
import random
import weakref
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

from eventcore._turns import StreamTurns
from eventcore.command import Command
from eventcore.errors import ValidationError
from eventcore.types import StreamId

if TYPE_CHECKING:
    from eventcore.codec import Codec
    from eventcore.store import EventStore


class CachedState(NamedTuple):
    """A folded state and the version of every stream it was folded from, in fold
    order (declared streams first, then discovered ones)."""

    # A NamedTuple rather than a frozen dataclass: one is built per cached
    # command, and a frozen dataclass's __init__ costs 0.48 us against 0.2 us.
    state: Any
    versions: tuple[tuple[StreamId, int], ...]

    def streams(self) -> list[StreamId]:
        """The streams the state was folded from, in fold order."""
        return [stream for stream, _ in self.versions]


_tuple_new = tuple.__new__


@dataclass(frozen=True, slots=True)
class CacheStats:
    """What a :class:`StateCache` has done so far (see :meth:`StateCache.stats`).

    ``hits``: attempts that found a state for every stream they declared (they
    decide without reading, unless the cache is pessimistic); ``misses``: attempts
    that had to read at least one stream from its start (or snapshot);
    ``stale``: optimistic appends refused because a cached stream had moved
    (each costs one catch-up read and a retry); ``rechecks``: refusals or empty
    decisions made on cached state and checked again on fresh state;
    ``verifications``: hits re-folded by ``verify``; ``entries``: states held now;
    ``turn_waits``: commands that waited for a turn on a stream another command
    held (``takes_turns``, see :class:`~eventcore.command.Command`), where
    without turns they would have raced.
    """

    hits: int
    misses: int
    stale: int
    rechecks: int
    verifications: int
    entries: int
    turn_waits: int = 0

    @property
    def hit_rate(self) -> float | None:
        """Hits as a share of lookups; ``None`` before the first lookup."""
        lookups = self.hits + self.misses
        return self.hits / lookups if lookups else None


# The fold of each command class: the first class seen with the same functions
# stands for all of them, so that the key is cheap to hash on every lookup.
_FOLDS: dict[type, type] = {}
_FOLD_OWNERS: dict[tuple[Any, ...], type] = {}


def fold_identity(cls: type[Command[Any, Any]]) -> type:
    """The class whose cache entries ``cls`` shares: classes with the same
    ``initial_state``, ``apply``, ``resolve_streams`` and per-stream setting (and
    ``merge_states``) fold alike, so a state one folded is right for the others."""
    found = _FOLDS.get(cls)
    if found is None:
        per_stream = cls.state_per_stream
        functions = (
            cls.initial_state,
            cls.apply,
            cls.resolve_streams,
            cls.merge_states if per_stream else None,
            per_stream,
        )
        found = _FOLDS[cls] = _FOLD_OWNERS.setdefault(functions, cls)
    return found


class StateCache:
    """A bounded, least-recently-used cache of folded command states.

    Use one per event loop (it is not thread-safe) and per store: entries describe
    that store's streams, and the first execution binds the cache to its store.
    ``verify`` (``True``, or a rate in [0, 1]) re-folds that share of cache hits
    from the store and compares; meant for tests, it costs a full read per check.
    :meth:`stats` (and the ``hits``, ``misses``, ``stale``, ``rechecks`` and
    ``verifications`` counters) say what happened.
    """

    def __init__(
        self, max_entries: int = 10_000, *, optimistic: bool = True, verify: bool | float = False
    ) -> None:
        if type(max_entries) is not int or max_entries < 1:
            raise ValidationError(f"max_entries must be a positive int, got {max_entries!r}")
        self.max_entries = max_entries
        self.optimistic = optimistic
        self.verify_rate = _verify_rate(verify)
        self._entries: OrderedDict[Hashable, CachedState] = OrderedDict()
        self._store: Callable[[], object | None] | None = None
        self._sampler = random.Random()
        # Commands that take turns (Command.takes_turns) on this store's streams.
        self.turns = StreamTurns()
        self.hits = 0
        self.misses = 0
        self.stale = 0
        self.rechecks = 0
        self.verifications = 0

    def stats(self) -> CacheStats:
        """The counters as they stand, in one frozen snapshot."""
        return CacheStats(
            self.hits,
            self.misses,
            self.stale,
            self.rechecks,
            self.verifications,
            len(self._entries),
            self.turns.waits,
        )

    async def warm(
        self,
        store: EventStore,
        command: type[Command[Any, Any]] | Command[Any, Any],
        streams: Iterable[str | Iterable[str]],
        *,
        codec: Codec | None = None,
    ) -> int:
        """Fold ``streams`` from ``store`` into entries for ``command``'s fold, so
        that the first commands on them already hit; return how many entries were
        filled.

        Each item is a stream id — the entry a command declaring just that stream
        (or, for a per-stream class, any command declaring it) reuses — or a
        sequence of stream ids, the declared stream set of a class whose state is
        not per stream. ``command`` is the class (or an instance of it); given a
        class, its ``initial_state`` and ``apply`` run on an instance with no
        fields set, so a class that reads its fields there fails loudly instead
        of caching a wrong state. Streams are read in batches, from their start
        (or from a snapshot, for classes that take them); ``codec`` decodes the
        events (the default codec if not given). Warming binds the cache to
        ``store`` like an execution does.
        """
        from eventcore._warm import warm_cache  # the executor's module imports this one

        return await warm_cache(self, store, command, streams, codec)

    def bind(self, store: object) -> None:
        """Tie the cache to ``store`` on first use; refuse any other store after."""
        if self._store is None:
            try:
                self._store = weakref.ref(store)
            except TypeError:  # a store that takes no weak reference is kept alive
                self._store = lambda: store
            return
        bound = self._store()
        if bound is not store:
            held = "a store that no longer exists" if bound is None else repr(bound)
            raise ValidationError(
                f"this StateCache holds states of another store ({held}), so it cannot be "
                f"used with {store!r}: a cache's entries describe one store's streams. "
                "Use one StateCache per store."
            )

    def should_verify(self) -> bool:
        """Whether to verify this cache hit (counted in ``verifications``)."""
        rate = self.verify_rate
        if rate <= 0.0 or (rate < 1.0 and self._sampler.random() >= rate):
            return False
        self.verifications += 1
        return True

    @staticmethod
    def key_for(command: Command[Any, Any], declared: tuple[StreamId, ...]) -> Hashable:
        """The entry for ``command`` over the stream set ``declared`` (for a
        per-stream class, ``declared`` is one stream)."""
        cls = type(command)
        fold = _FOLDS.get(cls) or fold_identity(cls)
        return (fold, declared)

    def get(self, key: Hashable) -> CachedState | None:
        """The entry under ``key``, counted as a hit or a miss."""
        entry = self._entries.get(key)
        if entry is None:
            self.misses += 1
            return None
        self._entries.move_to_end(key)
        self.hits += 1
        return entry

    def peek(self, key: Hashable) -> CachedState | None:
        """The entry under ``key``, marked recently used but not counted (the
        caller counts one lookup of several entries)."""
        entry = self._entries.get(key)
        if entry is not None:
            self._entries.move_to_end(key)
        return entry

    def put(self, key: Hashable, state: Any, versions: Mapping[StreamId, int]) -> None:
        """Remember ``state`` as of ``versions``, unless the entry already there was
        folded from newer events (a slower concurrent execution finishing late)."""
        current = self._entries.get(key)
        if current is not None:
            for stream, version in current.versions:  # a loop, not any(): no generator
                if version > versions.get(stream, -1):
                    return
        # tuple.__new__ is what CachedState(...) calls, through a Python-level
        # __new__: called directly, one frame fewer per cached command.
        self._entries[key] = _tuple_new(CachedState, (state, tuple(versions.items())))
        self._entries.move_to_end(key)
        if len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    def discard(self, key: Hashable) -> None:
        self._entries.pop(key, None)

    def clear(self) -> None:
        self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)


def _verify_rate(verify: object) -> float:
    if isinstance(verify, bool):
        return 1.0 if verify else 0.0
    if isinstance(verify, int | float) and not math.isnan(verify) and 0 <= verify <= 1:
        return float(verify)
    raise ValidationError(
        f"verify must be True, False or a sample rate between 0 and 1, got {verify!r}"
    )
