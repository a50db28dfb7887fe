"""The bench's observer option: commands run observed, the scenario's store stays plain."""

from __future__ import annotations

import pytest

from eventcore.bench.stores import _OBSERVED, BenchSetupError, open_backend, run_command
from eventcore.demo.bank import Deposit
from eventcore.observe import ObserverGroup
from eventcore.prometheus import PrometheusObserver


async def test_observer_prometheus_counts_the_commands_the_scenario_runs() -> None:
    async with open_backend("memory", {"observer": "prometheus"}) as store:
        for _ in range(3):
            await run_command(store, Deposit("alice", 1))
        _, group = _OBSERVED[store]
        assert isinstance(group, ObserverGroup)
        prometheus = group.find(PrometheusObserver)
        labels = {"command": "Deposit", "outcome": "success"}
        assert prometheus.registry.get_sample_value("eventcore_commands_total", labels) == 3
    assert store not in _OBSERVED


async def test_observer_noop_leaves_the_store_unwrapped_as_an_application_would() -> None:
    # A no-op observer listens to no store call: an Application would not wrap its
    # store, so the bench must not either, or it measures a cost nobody pays.
    async with open_backend("memory", {"observer": "noop"}) as store:
        await run_command(store, Deposit("alice", 1))
        wrapped, _ = _OBSERVED[store]
        assert wrapped is store


async def test_observer_none_runs_commands_unobserved() -> None:
    async with open_backend("memory", {"observer": "none"}) as store:
        await run_command(store, Deposit("alice", 1))
        assert store not in _OBSERVED


async def test_an_unknown_observer_choice_is_refused_with_the_choices() -> None:
    with pytest.raises(BenchSetupError, match="noop"):
        async with open_backend("memory", {"observer": "statsd"}):
            pass
