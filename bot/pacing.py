"""Pace the Slack Web API calls the digest, nudges and re-checks make, at Slack's documented rates.

Slack documents (docs.slack.dev/apis/web-api/rate-limits): posting messages about 1 per second
(per channel, with short bursts, plus a workspace-wide limit); `conversations.open` and
`chat.update` are Tier 3 (50+ per minute, sporadic bursts). A 429 is still waited out by the
client's retry handler (`bot.slack`), but pacing first means "Nudge all" for hundreds of people
runs at the allowed rate instead of bouncing off 429s with rounded-up Retry-After waits.

`Pacer` is a token bucket (GCRA): thread-safe, clock and sleep passed in. `PacedSlack` wraps a
WebClient with one pacer per method, shared by every thread of the process.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from slack_sdk.errors import SlackClientError
from slack_sdk.models.blocks import Block
from slack_sdk.web import WebClient


@dataclass(frozen=True)
class Rate:
    """`per_second` calls a second on average, `burst` of them back to back."""

    per_second: float
    burst: int = 1

    def scaled(self, factor: float) -> Rate:
        """The same rate `factor` times faster (tests and the fast benchmark)."""
        return Rate(self.per_second * factor, self.burst)


class NoTsInAnswer(SlackClientError):
    """Slack answered a post without the message's ts: it may have posted it, we cannot know where."""


TIER_3 = Rate(50 / 60, burst=1)  # "sporadic bursts welcome": we never rely on them
DOCUMENTED_RATES: dict[str, Rate] = {
    "chat.postMessage": Rate(1.0, burst=1),  # bursts are allowed but "not guaranteed to be displayed"
    "conversations.open": TIER_3,
    "chat.update": TIER_3,
}


def pacing_bound(count: int, rates: Mapping[str, Rate], methods: Sequence[str]) -> float:
    """The least time `count` calls of each of `methods` can take at `rates` (bursts spent first)."""
    return max(max(0, count - rates[m].burst) / rates[m].per_second for m in methods)


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

    def sent(self) -> None:
        """The call went out just now (maybe later than planned, after 429 retries): the next waits a slot."""
        with self._lock:
            now = self._clock()
            self._tat = max(self._tat or now, now + self._interval)


class PacedSlack:
    """The few Web API calls the workflows make, each paced per method; errors propagate (SlackApiError)."""

    def __init__(
        self,
        client: WebClient,
        rates: Mapping[str, Rate] = DOCUMENTED_RATES,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.client = client
        self.rates = dict(rates)
        self._pacers = {method: Pacer(rate, clock, sleep) for method, rate in self.rates.items()}

    @classmethod
    def scaled(cls, client: WebClient, factor: float) -> PacedSlack:
        """Documented rates `factor` times faster (tests)."""
        return cls(client, {m: r.scaled(factor) for m, r in DOCUMENTED_RATES.items()})

    @contextmanager
    def _paced(self, method: str) -> Iterator[None]:
        pacer = self._pacers.get(method)
        if pacer is None:
            yield
            return
        pacer.acquire()
        try:
            yield
        finally:
            pacer.sent()

    def open_dm(self, user_id: str) -> str:
        """The DM channel between the bot and `user_id` (conversations.open)."""
        with self._paced("conversations.open"):
            return str(self.client.conversations_open(users=user_id)["channel"]["id"])

    def post(
        self, channel: str, text: str, blocks: Sequence[Block | dict[str, Any]], thread_ts: str | None = None
    ) -> tuple[str, str]:
        """chat.postMessage; returns (channel ID, ts) as Slack answered them (NoTsInAnswer: it named none)."""
        with self._paced("chat.postMessage"):
            response = self.client.chat_postMessage(
                channel=channel, text=text, blocks=list(blocks), thread_ts=thread_ts
            )
        ts = response.get("ts")
        if not ts:
            raise NoTsInAnswer("chat.postMessage answered without a ts")
        return str(response.get("channel") or channel), str(ts)

    def update(self, channel: str, ts: str, text: str, blocks: Sequence[Block | dict[str, Any]]) -> None:
        """chat.update: replace a message's text and blocks."""
        with self._paced("chat.update"):
            self.client.chat_update(channel=channel, ts=ts, text=text, blocks=list(blocks))
