"""Pace the Slack Web API calls the digest, nudges and re-checks make, at Slack's documented rates.

Slack documents (docs.slack.dev/apis/web-api/rate-limits): posting messages about 1 per second
per channel (short bursts allowed), "while also maintaining a workspace-wide limit" it does not
publish; `chat.update` is Tier 3 (50+ per minute, sporadic bursts). So `chat.postMessage` is paced
twice: per channel at 1 a second, and workspace-wide by an adaptive rate that starts at the
documented 1 a second, ramps up slowly while calls go through, and on a 429 waits out Retry-After
and backs off (AIMD, like TCP), probing gently near the rate that drew the last 429. A 429 is still
retried by the client's handler (`bot.slack`), which tells the pacer, so every thread of the
process holds back, not just the one that was refused.

A DM goes through `chat.postMessage` with the user ID as `channel` (no `conversations.open`):
Slack posts to the app's DM with that person and answers with the DM channel's ID, which is
what `chat.update` needs later.

`Pacer` is a token bucket (GCRA): thread-safe, clock and sleep passed in. `PacedSlack` wraps a
WebClient with one pacer per method, shared by every thread of the process.
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from slack_sdk.errors import SlackClientError
from slack_sdk.http_retry.builtin_handlers import RateLimitErrorRetryHandler
from slack_sdk.models.blocks import Block
from slack_sdk.web import WebClient

from bot.rate import Pacer, Rate
from bot.slack import BoundedRateLimitRetryHandler


class NoTsInAnswer(SlackClientError):
    """Slack answered a post without the message's ts: it may have posted it, we cannot know where."""


@dataclass(frozen=True)
class Ramp:
    """How an adaptive rate follows a limit it is not told: gain `step` calls/s per second of calls
    that go through (`probe_step` once within `near` of the rate that drew the last 429), times
    `backoff` on a 429, kept within [`floor`, `ceiling`]."""

    step: float = 0.1
    probe_step: float = 0.01
    near: float = 0.8
    backoff: float = 0.7
    floor: float = 0.2
    ceiling: float = 10.0

    def scaled(self, factor: float) -> Ramp:
        """The same ramp for rates `factor` times faster (steps are rates per second: factor squared)."""
        f2 = factor * factor
        return Ramp(
            self.step * f2, self.probe_step * f2, self.near, self.backoff, self.floor * factor, self.ceiling * factor
        )


TIER_3 = Rate(50 / 60, burst=1)  # "sporadic bursts welcome": we never rely on them
PER_CHANNEL = Rate(1.0, burst=1)  # chat.postMessage: "1 per second" per channel; bursts "not guaranteed"
DOCUMENTED_RATES: dict[str, Rate] = {
    "chat.postMessage": Rate(1.0, burst=1),  # workspace-wide: where the adaptive rate starts
    "chat.update": TIER_3,
}
RAMPS: dict[str, Ramp] = {"chat.postMessage": Ramp()}  # the workspace cap for posting is not published


def pacing_bound(count: int, rates: Mapping[str, Rate], methods: Sequence[str]) -> float:
    """The least time `count` calls of each of `methods` can take at `rates` (bursts spent first)."""
    return max(max(0, count - rates[m].burst) / rates[m].per_second for m in methods)


class AdaptivePacer(Pacer):
    """A pacer whose rate follows a limit it is not told (AIMD, `Ramp`): up while calls go through,
    down on a 429, probing slowly near the rate that drew the last one."""

    def __init__(
        self,
        rate: Rate,
        ramp: Ramp,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        super().__init__(rate, clock, sleep)
        self.ramp = ramp
        self.per_second = rate.per_second
        self._refused_at: float | None = None  # the rate that drew the last 429
        self._backed_off_until = float("-inf")
        self._retried = False

    def _set(self, per_second: float) -> None:
        self.per_second = min(self.ramp.ceiling, max(self.ramp.floor, per_second))
        self._interval = 1.0 / self.per_second
        self._tolerance = (self.rate.burst - 1) * self._interval

    def sent(self, ok: bool = True) -> None:
        """A call is done: after a 429 retry the next waits a slot; one that went through ramps the rate up."""
        with self._lock:
            now = self._clock()
            if self._retried:
                self._retried = False
                self._tat = max(self._tat or now, now + self._interval)
            if ok:
                near = self._refused_at is not None and self.per_second >= self._refused_at * self.ramp.near
                step = self.ramp.probe_step if near else self.ramp.step
                self._set(self.per_second + step * self._interval)  # about `step` per second of calls

    def throttled(self, retry_after: float) -> None:
        """A 429: everyone waits Retry-After, and the rate backs off (once per Retry-After, however many threads)."""
        with self._lock:
            now = self._clock()
            self._tat = max(self._tat or now, now + retry_after)
            self._retried = True
            if now >= self._backed_off_until:
                self._refused_at = self.per_second
                self._set(self.per_second * self.ramp.backoff)
                self._backed_off_until = now + retry_after


class KeyedPacer:
    """One pacer per key (a channel), created on first use and forgotten once idle."""

    PRUNE_AT = 1024

    def __init__(
        self,
        rate: Rate,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.rate = rate
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._pacers: dict[str, Pacer] = {}

    def get(self, key: str) -> Pacer:
        """The pacer of `key`."""
        with self._lock:
            pacer = self._pacers.get(key)
            if pacer is None:
                if len(self._pacers) >= self.PRUNE_AT:
                    now = self._clock()
                    self._pacers = {k: p for k, p in self._pacers.items() if not p.idle_since(now)}
                pacer = self._pacers[key] = Pacer(self.rate, self._clock, self._sleep)
            return pacer


class PacedSlack:
    """The few Web API calls the workflows make, paced per method (and per channel for posts);
    errors propagate (SlackApiError)."""

    def __init__(
        self,
        client: WebClient,
        rates: Mapping[str, Rate] = DOCUMENTED_RATES,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        ramps: Mapping[str, Ramp] = RAMPS,
        per_channel: Rate = PER_CHANNEL,
    ) -> None:
        self.client = client
        self.rates = dict(rates)
        self._pacers: dict[str, Pacer] = {
            method: AdaptivePacer(rate, ramps[method], clock, sleep) if method in ramps else Pacer(rate, clock, sleep)
            for method, rate in self.rates.items()
        }
        self._channels = KeyedPacer(per_channel, clock, sleep)
        listener: weakref.ReferenceType[Callable[[str, float], None]] = weakref.WeakMethod(self.throttled)
        for handler in client.retry_handlers:
            if isinstance(handler, BoundedRateLimitRetryHandler):
                handler.listeners.append(listener)
        self._once: WebClient | None = None

    def _at_most_once(self) -> WebClient:
        """The same client without the retries that could repeat a request Slack may have acted on.

        A 5xx or a connection dropped after the request went out may still have posted the message:
        repeating it could post twice. Only a 429 (Slack refused it: nothing was posted) is retried.
        """
        if self._once is None:
            client = self.client
            self._once = WebClient(
                token=client.token,
                base_url=client.base_url,
                timeout=client.timeout,
                retry_handlers=[h for h in client.retry_handlers if isinstance(h, RateLimitErrorRetryHandler)],
                logger=logging.getLogger("bot.slack.web"),
            )
        return self._once

    @classmethod
    def scaled(cls, client: WebClient, factor: float) -> PacedSlack:
        """Documented rates `factor` times faster (tests)."""
        return cls(
            client,
            {m: r.scaled(factor) for m, r in DOCUMENTED_RATES.items()},
            ramps={m: r.scaled(factor) for m, r in RAMPS.items()},
            per_channel=PER_CHANNEL.scaled(factor),
        )

    def throttled(self, method: str, retry_after: float) -> None:
        """Slack answered `method` with a 429 (told by the client's retry handler): hold every caller back."""
        pacer = self._pacers.get(method)
        if pacer is not None:
            pacer.throttled(retry_after)

    def workspace_rate(self, method: str) -> float:
        """Calls a second `method` is paced at across the workspace now."""
        pacer = self._pacers.get(method)
        if pacer is None:
            return float("inf")
        return pacer.per_second if isinstance(pacer, AdaptivePacer) else pacer.rate.per_second

    @contextmanager
    def _paced(self, method: str, *pacers: Pacer) -> Iterator[None]:
        own = self._pacers.get(method)
        chain = [*pacers, *([own] if own is not None else [])]
        for pacer in chain:
            pacer.acquire()
        ok = False
        try:
            yield
            ok = True
        finally:
            for pacer in chain:
                pacer.sent(ok)

    def post(
        self,
        channel: str,
        text: str,
        blocks: Sequence[Block | dict[str, Any]],
        thread_ts: str | None = None,
        at_most_once: bool = False,
    ) -> tuple[str, str]:
        """chat.postMessage; returns (channel ID, ts) as Slack answered them (NoTsInAnswer: it named none)."""
        client = self._at_most_once() if at_most_once else self.client
        with self._paced("chat.postMessage", self._channels.get(channel)):
            response = client.chat_postMessage(channel=channel, text=text, blocks=list(blocks), thread_ts=thread_ts)
        ts = response.get("ts")
        if not ts:
            raise NoTsInAnswer("chat.postMessage answered without a ts")
        return str(response.get("channel") or channel), str(ts)

    def dm(self, user_id: str, text: str, blocks: Sequence[Block | dict[str, Any]]) -> tuple[str, str]:
        """DM `user_id`: chat.postMessage with the user ID as channel, no conversations.open.

        Returns the DM channel's ID as Slack answered it (what chat.update needs) and the ts.
        """
        return self.post(user_id, text, blocks, at_most_once=True)  # a DM goes at most once

    def update(self, channel: str, ts: str, text: str, blocks: Sequence[Block | dict[str, Any]]) -> None:
        """chat.update: replace a message's text and blocks."""
        with self._paced("chat.update"):
            self.client.chat_update(channel=channel, ts=ts, text=text, blocks=list(blocks))
