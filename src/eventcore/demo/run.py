"""The demo: a bank under concurrent load, on any store (SQLite by default).

Opens accounts, fires many transfers at once — they collide on shared accounts,
conflict, retry, and some are refused for lack of funds — then checks that no
money was created or lost and shows the tail of the global log. Meanwhile a
projection keeps the bank's read model (:mod:`eventcore.demo.read_model`) up to
date; at the end its balances must equal the folded account streams.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from eventcore.application import Application
from eventcore.cache import StateCache
from eventcore.demo.bank import Deposit, MoneyDeposited, Transfer, bank_codec
from eventcore.demo.read_model import BankReadModel
from eventcore.errors import BusinessRuleViolation, RetriesExhausted
from eventcore.execute import ExecutionResult
from eventcore.observe import Observer
from eventcore.projection import ProjectionRunner, ProjectionStatus, RunnerOptions
from eventcore.retry import RetryPolicy
from eventcore.types import new_event_id

OPENING_BALANCE = 1_000
# The racing round puts every transfer in flight at once on a handful of accounts:
# each account is wanted by dozens of commands at the same moment, so a command
# can lose many races in a row. Enough retries, short waits, and wide jitter (so
# that losers do not collide again in step) let nearly every transfer through; the
# library default (4 retries) suits ordinary contention, not this.
RETRY = RetryPolicy(max_retries=25, base_delay=0.002, jitter=0.5, max_delay=0.05)
# SQLite is polled for new events: a short poll keeps the read model close behind.
READ_MODEL_RUNNER = RunnerOptions(poll_interval=0.1)


@dataclass(frozen=True, slots=True)
class DemoOptions:
    database: str | Path  # a database URL, or a SQLite file path
    accounts: int = 10
    transfers: int = 200
    seed: int | None = None


@dataclass(slots=True)
class Tally:
    committed: int = 0
    refused: int = 0
    exhausted: int = 0
    retries: int = 0
    total: int = 0
    expected_total: int = 0
    read_model_agrees: bool = False  # the projection's balances equal the streams

    @property
    def conserved(self) -> bool:
        return self.total == self.expected_total

    def count(self, outcome: ExecutionResult | BaseException) -> None:
        if isinstance(outcome, BusinessRuleViolation):
            self.refused += 1
        elif isinstance(outcome, RetriesExhausted):
            self.exhausted += 1
        elif isinstance(outcome, BaseException):
            raise outcome
        else:
            self.committed += 1
            self.retries += outcome.attempts - 1


Say = Callable[[str], None]
OnRound = Callable[[str, int], None]


async def run_demo(
    options: DemoOptions, say: Say = print, observers: Iterable[Observer] = ()
) -> Tally:
    """Open the store ``options.database`` names and run the demo on it."""
    async with await Application.open(
        options.database, codec=bank_codec, retry=RETRY, observers=observers
    ) as app:
        tally = await run_demo_on(app, options, say)
        await show_log_tail(app, say)
        return tally


async def run_demo_on(
    app: Application, options: DemoOptions, say: Say = print, on_round: OnRound | None = None
) -> Tally:
    """Run the demo on an open application (its codec must know the bank's events),
    reporting each step through ``say`` and each round's start through
    ``on_round(label, commands)``; return what happened."""
    # The read model lives in memory, so it starts empty: its runner rebuilds it
    # from the start of the log (checkpoint and dead letters too), then follows.
    model = BankReadModel(app.codec)
    runner = app.projection_runner(model, options=READ_MODEL_RUNNER, rebuild=True)
    async with runner:
        tally, accounts = await _rounds(app, options, say, on_round)
        await runner.caught_up()
        await _check_read_model(app, runner, model, accounts, tally, say)
    return tally


async def _rounds(
    app: Application, options: DemoOptions, say: Say, on_round: OnRound | None
) -> tuple[Tally, list[str]]:
    rng = random.Random(options.seed)
    run_id = new_event_id().hex[-8:]
    tally = Tally()
    accounts = [f"demo-{run_id}-account-{i}" for i in range(options.accounts)]
    for account in accounts:
        await app.execute(Deposit(account, OPENING_BALANCE))
    say(f"run {run_id}: opened {len(accounts)} accounts with {OPENING_BALANCE} each")

    # Round 1: every transfer at once. They race for shared accounts: the version
    # checks turn each race into a conflict, and the loser retries on fresh state.
    racing = _random_transfers(rng, accounts, options.transfers, "race")
    if on_round is not None:
        on_round("racing", len(racing))
    started = time.perf_counter()
    outcomes = await _all_at_once(app, racing)
    _report(say, "racing", tally, outcomes, time.perf_counter() - started)
    say(
        f"  ({options.transfers} transfers at once on {options.accounts} accounts: the "
        "conflicts are the point; each loser re-read fresh state and retried)"
    )
    if tally.exhausted:
        say(_explain_exhausted(tally.exhausted, options))

    # Round 2: the parallel executor orders transfers that share an account, and
    # the state cache spares the read before each append.
    ordered = _random_transfers(rng, accounts, options.transfers, "ordered")
    if on_round is not None:
        on_round("execute_all + cache", len(ordered))
    started = time.perf_counter()
    in_order = await app.execute_all(ordered, concurrency=16, cache=StateCache())
    _report(say, "execute_all + cache", tally, in_order, time.perf_counter() - started)

    tally.total = sum((await _balances(app, accounts)).values())
    tally.expected_total = OPENING_BALANCE * len(accounts)
    verdict = "conserved" if tally.conserved else "NOT CONSERVED"
    say(f"money in all accounts: {tally.total} (expected {tally.expected_total}): {verdict}")
    return tally, accounts


async def _check_read_model(
    app: Application,
    runner: ProjectionRunner,
    model: BankReadModel,
    accounts: Sequence[str],
    tally: Tally,
    say: Say,
) -> None:
    """The invariant of the read model: for this run's accounts, its balances are
    the folded streams and its transfers the committed ones."""
    folded = await _balances(app, accounts)
    projected = {account: model.balances.get(account) for account in accounts}
    views = [model.view.accounts.get(account) for account in accounts]
    transfers = sum(view.transfers for view in views if view is not None) // 2
    tally.read_model_agrees = projected == folded and transfers == tally.committed
    verdict = "agrees" if tally.read_model_agrees else "DISAGREES"
    say(
        f"read model ({model.name}): balances of {len(accounts)} accounts against their "
        f"streams, {transfers} transfers (committed {tally.committed}): {verdict}"
    )
    say(describe_status(await runner.status()))


def describe_status(status: ProjectionStatus) -> str:
    where = "caught up" if status.lag == 0 else "behind"
    return (
        f"projection {status.name}: {where} at position {status.position} of "
        f"{status.head} (lag {status.lag} events, {status.lag_seconds:.2f} s), "
        f"{status.state}, {status.dead_letters} dead letters"
    )


async def _all_at_once(
    app: Application, transfers: Sequence[Transfer]
) -> list[ExecutionResult | BaseException]:
    return await asyncio.gather(*(app.execute(t) for t in transfers), return_exceptions=True)


def _explain_exhausted(exhausted: int, options: DemoOptions) -> str:
    return (
        f"  {exhausted} gave up after {RETRY.max_retries} retries: {options.transfers} "
        f"transfers raced for {options.accounts} accounts at the same instant, far more "
        "contention than real traffic; each wrote nothing (RetriesExhausted) and could "
        "simply be run again"
    )


def _random_transfers(
    rng: random.Random, accounts: Sequence[str], count: int, tag: str
) -> list[Transfer]:
    transfers = []
    for i in range(count):
        source, target = rng.sample(list(accounts), 2)
        transfers.append(Transfer(source, target, rng.randint(1, 400), f"{tag}-{i}"))
    return transfers


def _report(
    say: Say,
    label: str,
    tally: Tally,
    outcomes: Sequence[ExecutionResult | BaseException],
    elapsed: float,
) -> None:
    fields = ("committed", "refused", "exhausted", "retries")
    before = [getattr(tally, name) for name in fields]
    for outcome in outcomes:
        tally.count(outcome)
    committed, refused, exhausted, retries = (
        getattr(tally, name) - then for name, then in zip(fields, before, strict=True)
    )
    say(
        f"{label}: {len(outcomes)} transfers in {elapsed:.2f} s "
        f"({len(outcomes) / elapsed:,.0f} commands/s): {committed} committed, "
        f"{refused} refused (insufficient funds), {exhausted} gave up; "
        f"{retries} conflicts retried"
    )


async def _balances(app: Application, accounts: Sequence[str]) -> dict[str, int]:
    balances = dict.fromkeys(accounts, 0)
    for account in accounts:
        async for record in app.store.iter_stream(account):
            event = app.decode(record)
            balances[account] += (
                event.amount if isinstance(event, MoneyDeposited) else -event.amount
            )
    return balances


async def show_log_tail(app: Application, say: Say, count: int = 3) -> None:
    """The last ``count`` events of the global log, decoded."""
    head = await app.store.head_position()
    say(f"global log: {head} events; the last {min(count, head)}:")
    for record in await app.store.read_all(after=max(0, head - count)):
        say(
            f"  #{record.global_position} {record.stream_id} v{record.stream_version} "
            f"{record.event_type} {app.decode(record)}"
        )
