"""The state cache: folded command state kept between executions.

With a cache, :func:`eventcore.execute` remembers, per command type and declared
stream set, the state it folded and the stream versions it was built from. The
next execution of such a command does not read those streams again:

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

Only command classes that opt in (``reuses_state = True``, see
:class:`~eventcore.command.Command`) may be run with a cache: a cached state was
folded by an earlier instance of the class, so ``initial_state``, ``apply`` and
``resolve_streams`` must depend only on the class and the events (never on the
command's fields); ``apply`` must return a new state rather than change the one
it is given; and the state must not depend on how events of *different* streams
interleave — catching up applies a stream's newer events after the older events
of every stream. The version check cannot catch a command that breaks these
rules, so tests can: ``StateCache(verify=True)`` (or a sample rate such as
``verify=0.1``) folds the streams afresh, up to the cached versions, on a cache
hit and raises :class:`~eventcore.errors.StateReuseMismatch` if the two states
differ (states must compare by value, as dataclasses and msgspec Structs do).

A cache describes one store's streams: the first :func:`~eventcore.execute`
binds it to its store, and using it with another store is refused.
"""

from __future__ import annotations

import math
import random
import weakref
from collections import OrderedDict
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass
from typing import Any

from eventcore.command import Command
from eventcore.errors import ValidationError
from eventcore.types import StreamId


@dataclass(frozen=True, slots=True)
class CachedState:
    """A folded state and the version of every stream it was folded from, in fold
    order (declared streams first, then discovered ones)."""

    state: Any
    versions: tuple[tuple[StreamId, int], ...]


class StateCache:
    """A bounded, least-recently-used cache of folded command states.

    Use one per event loop (it is not thread-safe) and per store: entries describe
    that store's streams, and the first execution binds the cache to its store.
    ``verify`` (``True``, or a rate in [0, 1]) re-folds that share of cache hits
    from the store and compares; meant for tests, it costs a full read per check.
    ``hits``, ``misses`` and ``verifications`` count what happened.
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
        self.hits = 0
        self.misses = 0
        self.verifications = 0

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
        return (type(command), declared)

    def get(self, key: Hashable) -> CachedState | None:
        entry = self._entries.get(key)
        if entry is None:
            self.misses += 1
            return None
        self._entries.move_to_end(key)
        self.hits += 1
        return entry

    def put(self, key: Hashable, state: Any, versions: Mapping[StreamId, int]) -> None:
        """Remember ``state`` as of ``versions``, unless the entry already there was
        folded from newer events (a slower concurrent execution finishing late)."""
        current = self._entries.get(key)
        if current is not None:
            for stream, version in current.versions:  # a loop, not any(): no generator
                if version > versions.get(stream, -1):
                    return
        self._entries[key] = CachedState(state, tuple(versions.items()))
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
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
