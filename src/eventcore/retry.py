"""How long to wait before re-running a command that hit a version conflict."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Literal

from eventcore.errors import ValidationError


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Retry on version conflicts only, up to ``max_retries`` times.

    The wait before retry ``n`` (counting from 0) is ``base_delay * 2**n`` for
    ``"exponential"`` or ``base_delay`` for ``"fixed"``, capped at ``max_delay``,
    times a random factor in ``[1 - jitter, 1 + jitter]`` so that commands that
    collided do not collide again in lock step.

    The default — 4 retries (5 attempts), 10 ms doubling, jitter 0.2 — is
    :meth:`exponential`'s.
    """

    max_retries: int = 4
    base_delay: float = 0.010
    backoff: Literal["exponential", "fixed"] = "exponential"
    jitter: float = 0.2
    max_delay: float = 5.0

    def __post_init__(self) -> None:
        if type(self.max_retries) is not int or self.max_retries < 0:
            raise ValidationError(
                f"max_retries must be a non-negative int, got {self.max_retries!r}"
            )
        for name in ("base_delay", "max_delay"):
            value = getattr(self, name)
            if (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or not (math.isfinite(value) and value >= 0)
            ):
                raise ValidationError(f"{name} must be a finite number >= 0, got {value!r}")
        if self.backoff not in ("exponential", "fixed"):
            raise ValidationError(f"backoff must be 'exponential' or 'fixed', got {self.backoff!r}")
        if (
            isinstance(self.jitter, bool)
            or not isinstance(self.jitter, int | float)
            or not (0 <= self.jitter < 1)
        ):
            raise ValidationError(f"jitter must be a number in [0, 1), got {self.jitter!r}")

    @classmethod
    def exponential(
        cls, max_retries: int = 4, base_delay: float = 0.010, *, jitter: float = 0.2
    ) -> RetryPolicy:
        return cls(max_retries, base_delay, "exponential", jitter)

    @classmethod
    def fixed(cls, delay: float, max_retries: int = 4, *, jitter: float = 0.0) -> RetryPolicy:
        if (
            isinstance(delay, bool)
            or not isinstance(delay, int | float)
            or not (math.isfinite(delay) and delay >= 0)
        ):
            raise ValidationError(f"delay must be a finite number >= 0, got {delay!r}")
        return cls(max_retries, delay, "fixed", jitter)

    @classmethod
    def no_retry(cls) -> RetryPolicy:
        return cls(max_retries=0)

    @property
    def max_attempts(self) -> int:
        return self.max_retries + 1

    def delay(self, retry: int, rng: random.Random | None = None) -> float:
        """Seconds to wait before retry number ``retry`` (0 for the first retry)."""
        if self.backoff == "exponential":
            # Cap the exponent too: 2**retry overflows a float long before it matters.
            base = self.base_delay * 2.0 ** min(retry, 60)
        else:
            base = self.base_delay
        base = min(base, self.max_delay)
        if self.jitter:
            base *= (rng or random).uniform(1 - self.jitter, 1 + self.jitter)
        return base


DEFAULT_RETRY_POLICY = RetryPolicy()
