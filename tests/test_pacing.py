"""Pacing: per-channel 1/s, the adaptive workspace-wide rate (pure, on a fake clock), and 429s heard from the client."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from slack_sdk.web import WebClient

from bot.pacing import AdaptivePacer, KeyedPacer, PacedSlack, Ramp, Rate
from bot.slack import BoundedRateLimitRetryHandler
from tests.slack_standin import SlackStandIn


class FakeTime:
    """A clock whose sleep moves it forward."""

    def __init__(self) -> None:
        self.now = 0.0

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def adaptive(time: FakeTime, ramp: Ramp | None = None) -> AdaptivePacer:
    return AdaptivePacer(Rate(1.0), ramp or Ramp(), time.clock, time.sleep)


def test_the_adaptive_rate_starts_at_the_documented_rate_and_ramps_up_while_calls_go_through() -> None:
    time = FakeTime()
    pacer = adaptive(time)
    starts = []
    for _ in range(60):
        pacer.acquire()
        starts.append(time.now)
        pacer.sent(ok=True)
    assert starts[1] - starts[0] == pytest.approx(1.0)  # the documented 1 a second first
    assert 0.0 < starts[-1] - starts[-2] < 0.5  # then faster: more than 2 a second after a minute or so
    assert pacer.per_second == pytest.approx(1.0 / (starts[-1] - starts[-2]), rel=0.1)


def test_failed_calls_do_not_ramp_the_rate_up() -> None:
    time = FakeTime()
    pacer = adaptive(time)
    for _ in range(20):
        pacer.acquire()
        pacer.sent(ok=False)
    assert pacer.per_second == 1.0


def test_a_429_holds_every_caller_for_retry_after_and_backs_off_once_per_window() -> None:
    time = FakeTime()
    pacer = adaptive(time, Ramp(backoff=0.5))
    for _ in range(30):
        pacer.acquire()
        pacer.sent()
    before = pacer.per_second
    pacer.throttled(3.0)
    pacer.throttled(3.0)  # a second thread refused in the same window: no second back-off
    assert pacer.per_second == pytest.approx(before * 0.5)
    started = time.now
    pacer.acquire()
    assert time.now - started >= 3.0  # nobody goes before Retry-After
    slot = 1.0 / pacer.per_second
    pacer.sent()
    after_retry = time.now
    pacer.acquire()
    assert time.now - after_retry == pytest.approx(slot)  # and the next waits a slot after the retried call


def test_near_the_rate_that_drew_a_429_the_ramp_only_probes() -> None:
    time = FakeTime()
    ramp = Ramp(step=1.0, probe_step=0.01, near=0.8, backoff=0.9)
    pacer = adaptive(time, ramp)
    for _ in range(20):
        pacer.acquire()
        pacer.sent()
    refused_at = pacer.per_second
    pacer.throttled(1.0)
    for _ in range(20):  # 0.9 x is already near: slow probing only
        pacer.acquire()
        pacer.sent()
    assert pacer.per_second < refused_at
    assert pacer.per_second == pytest.approx(refused_at * 0.9, rel=0.05)


def test_the_rate_stays_within_floor_and_ceiling() -> None:
    time = FakeTime()
    pacer = adaptive(time, Ramp(step=100.0, ceiling=5.0, floor=0.5, backoff=0.1))
    for _ in range(50):
        pacer.acquire()
        pacer.sent()
    assert pacer.per_second == 5.0
    for _ in range(5):
        time.now += 10
        pacer.throttled(1.0)
    assert pacer.per_second == 0.5


def test_each_channel_is_paced_on_its_own() -> None:
    time = FakeTime()
    channels = KeyedPacer(Rate(1.0), time.clock, time.sleep)
    for key in ("U1", "U2", "U3"):  # three DMs: no wait between different channels
        channels.get(key).acquire()
    assert time.now == 0.0
    channels.get("U1").acquire()  # a second post to one channel waits its second
    assert time.now == pytest.approx(1.0)


def test_idle_channels_are_forgotten() -> None:
    time = FakeTime()
    channels = KeyedPacer(Rate(1.0), time.clock, time.sleep)
    for i in range(KeyedPacer.PRUNE_AT):
        channels.get(f"U{i}").acquire()
    time.now += 5
    channels.get("Unew").acquire()
    assert len(channels._pacers) == 1


@pytest.fixture
def standin() -> Iterator[SlackStandIn]:
    with SlackStandIn() as running:
        yield running


def test_a_429_the_client_waits_out_also_backs_the_workspace_rate_off(standin: SlackStandIn) -> None:
    naps: list[float] = []
    client = WebClient(
        token="xoxb-test-token",
        base_url=standin.api_url,
        retry_handlers=[BoundedRateLimitRetryHandler(sleep=naps.append)],
    )
    slack = PacedSlack.scaled(client, 1000)
    start = slack.workspace_rate("chat.postMessage")
    standin.rate_limit("chat.postMessage", retry_after=2, times=1)
    channel, ts = slack.dm("U0BOB0001", "hello", [])
    assert channel == "D0BOB0001" and ts  # Slack answers with the DM channel's ID
    assert len(standin.accepted("chat.postMessage")) == 1 and len(naps) == 1 and naps[0] >= 2
    assert slack.workspace_rate("chat.postMessage") < start
