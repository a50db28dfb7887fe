from __future__ import annotations

import pytest

from eventcore import BusinessRuleViolation, UndeclaredStreamError
from eventcore.demo.bank import Deposit, MoneyDeposited, MoneyWithdrawn, Transfer, bank_codec
from eventcore.testing.scenario import given


def test_then_passes_when_the_command_decides_exactly_those_events() -> None:
    outcome = (
        given({"a": [MoneyDeposited(100)]}, codec=bank_codec)
        .when(Transfer("a", "b", 30, reference="r"))
        .then([("a", MoneyWithdrawn(30, "r")), ("b", MoneyDeposited(30, "r"))])
    )
    assert outcome.streams_read == ("a", "b")


def test_then_fails_when_the_events_differ() -> None:
    outcome = given({"a": [MoneyDeposited(100)]}, codec=bank_codec).when(Transfer("a", "b", 30))
    with pytest.raises(AssertionError, match="expected events"):
        outcome.then([("a", MoneyWithdrawn(31))])


def test_then_raises_checks_type_and_message() -> None:
    outcome = given({}, codec=bank_codec).when(Transfer("a", "b", 30))
    outcome.then_raises(BusinessRuleViolation, match="insufficient funds: a has 0")
    with pytest.raises(AssertionError, match="does not match"):
        outcome.then_raises(BusinessRuleViolation, match="plenty")
    with pytest.raises(AssertionError, match="expected UndeclaredStreamError"):
        outcome.then_raises(UndeclaredStreamError)


def test_then_raises_fails_when_the_command_succeeds() -> None:
    outcome = given({}, codec=bank_codec).when(Deposit("a", 1))
    with pytest.raises(AssertionError, match="but it decided"):
        outcome.then_raises(BusinessRuleViolation)


def test_then_fails_when_the_command_raised() -> None:
    outcome = given({}, codec=bank_codec).when(Transfer("a", "b", 30))
    with pytest.raises(AssertionError, match="but it raised"):
        outcome.then_nothing()
