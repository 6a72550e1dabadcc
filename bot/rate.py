"""Pace calls at a documented rate: `Rate` and `Pacer`, a thread-safe token bucket (GCRA).

Standard library only, so the AWS edge (CloudTrail's 2 requests a second, `bot.aws`) paces its
calls without importing the Slack SDK; `bot.pacing` builds Slack's adaptive pacing on it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Rate:
    """`per_second` calls a second on average, `burst` of them back to back."""

    per_second: float
    burst: int = 1

    def scaled(self, factor: float) -> Rate:
        """The same rate `factor` times faster (tests and the fast benchmark)."""
        return Rate(self.per_second * factor, self.burst)


class Pacer:
    """A token bucket: `acquire()` returns once a call is allowed (sleeping as needed), thread-safe."""

    def __init__(
        self,
        rate: Rate,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if rate.per_second <= 0 or rate.burst < 1:
            raise ValueError(f"invalid rate {rate}")
        self.rate = rate
        self._interval = 1.0 / rate.per_second
        self._tolerance = (rate.burst - 1) * self._interval
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._tat: float | None = None  # theoretical arrival time of the next call

    def acquire(self) -> float:
        """Wait for this call's slot; returns the seconds waited."""
        with self._lock:
            now = self._clock()
            tat = now if self._tat is None else max(self._tat, now)
            wait = max(0.0, tat - self._tolerance - now)
            self._tat = tat + self._interval
        if wait > 0:
            self._sleep(wait)
        return wait

    def sent(self, ok: bool = True) -> None:
        """The call went out just now (maybe later than planned, after 429 retries): the next waits a slot."""
        with self._lock:
            now = self._clock()
            self._tat = max(self._tat or now, now + self._interval)

    def throttled(self, retry_after: float) -> None:
        """Slack answered 429: no call goes before Retry-After has passed (the refused one is retried then)."""
        with self._lock:
            now = self._clock()
            self._tat = max(self._tat or now, now + retry_after)

    def idle_since(self, now: float) -> bool:
        """No call is planned after `now` (a keyed pacer may forget this one)."""
        with self._lock:
            return self._tat is None or self._tat <= now
