"""When ``run_transaction()`` retries, how long it pauses, and when it gives up (both twins).

The loop itself is in ``_base_async.py`` (and its generated sync twin); what does not wait lives
here once.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from .errors import ConfigurationError, DatabaseError

__all__ = ["RetryPolicy", "check_retry_arguments", "is_retryable"]


def _number(owner: str, key: str, value: Any, *, integer: bool) -> Any:
    """``value`` if it is a number >= 0 (an integer when ``integer``), else ConfigurationError."""
    ok = isinstance(value, int) or (not integer and isinstance(value, float))
    if isinstance(value, bool) or not ok or not value >= 0:  # ``not >=`` also rejects NaN
        wanted = "an integer" if integer else "a number of seconds"
        raise ConfigurationError(f"{owner}: {key} must be {wanted} >= 0, got {value!r}", key=key)
    return value if integer else float(value)


@dataclass(frozen=True)
class RetryPolicy:
    """``run_transaction()`` settings of one database (its constructor's ``retry*`` options).

    Attributes:
        retries: Retries after the first attempt (0: run once).
        backoff: Upper bound of the first pause, in seconds; it doubles on every retry...
        max_backoff: ... up to this many seconds. Each pause is drawn uniformly between 0 and
            the bound ("full jitter"), so callers that failed together do not retry together.
        timeout: Seconds after the first attempt started beyond which no retry is started.
    """

    retries: int = 30
    backoff: float = 0.01
    max_backoff: float = 0.5
    timeout: float = 30.0

    @classmethod
    def checked(
        cls, owner: str, *, retries: Any, backoff: Any, max_backoff: Any, timeout: Any
    ) -> RetryPolicy:
        """Build a policy from constructor options.

        Raises:
            ConfigurationError: A value is negative, of the wrong type, or the timeout is 0.
        """
        policy = cls(
            retries=_number(owner, "retries", retries, integer=True),
            backoff=_number(owner, "retry_backoff", backoff, integer=False),
            max_backoff=_number(owner, "retry_max_backoff", max_backoff, integer=False),
            timeout=_number(owner, "retry_timeout", timeout, integer=False),
        )
        if policy.timeout <= 0:
            raise ConfigurationError(
                f"{owner}: retry_timeout must be a number of seconds > 0, got {timeout!r}",
                key="retry_timeout",
            )
        return policy

    def pause(self, retry: int) -> float:
        """Seconds to sleep before retry number ``retry`` (1 for the first retry)."""
        bound = min(self.max_backoff, self.backoff * (2.0 ** min(retry - 1, 60)))
        return random.uniform(0.0, bound)  # noqa: S311 - jitter, not cryptography


DEFAULT_POLICY = RetryPolicy()


def is_retryable(exc: BaseException) -> bool:
    """True for an error after which running the whole transaction again is safe."""
    return isinstance(exc, DatabaseError) and exc.retryable


def check_retry_arguments(retries: Any, retry_timeout: Any) -> None:
    """Reject bad per-call ``retries`` / ``retry_timeout`` before anything runs.

    Raises:
        ValueError: Not a non-negative integer / a positive number of seconds.
    """
    if retries is not None and (
        isinstance(retries, bool) or not isinstance(retries, int) or retries < 0
    ):
        raise ValueError(f"retries must be an integer >= 0, got {retries!r}")
    if retry_timeout is not None and (
        isinstance(retry_timeout, bool)
        or not isinstance(retry_timeout, (int, float))
        or not retry_timeout > 0
    ):
        raise ValueError(f"retry_timeout must be a number of seconds > 0, got {retry_timeout!r}")
