"""`python -m bot serve` as a process: uvicorn (one process, the scheduler in it) on a real port, signed requests.

IAM is moto's server behind tests.iam_proxy.IamProxy with one second per call, so one audit of the
demo account takes about ten seconds: the acks must still come back in well under a second.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from bot.demo import DEMO_USERS, demo_client, seed_demo_account
from tests.bot_process import bot_env, serve_process
from tests.fixtures_aws import FAKE_AWS_ENV
from tests.iam_proxy import IamProxy
from tests.slack_standin import ADMIN, MEMBERS, NOBODY, SlackStandIn, command_body, get, post, sign
from tests.slow_clients import SlowClients, ack_times, big_body, declared_big_body

REPO = Path(__file__).resolve().parents[1]
SECRET = "serve-test-signing-secret"
IAM_CALL_DELAY = 1.5  # about seven calls in sequence (others overlap): a ten-second audit
pytestmark = pytest.mark.xdist_group("bot_process")  # one worker starts the module's bot process, once


@dataclass
class BotProcess:
    url: str
    standin: SlackStandIn
    proxy: IamProxy
    process: subprocess.Popen[str]
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def command(self, text: str, user_id: str = ADMIN, name: str | None = None) -> tuple[float, int, str]:
        response_url = self.standin.response_url(name)
        body = command_body(text, user_id, response_url)
        result = post(self.url, "/slack/events", body, sign(body, SECRET))
        return result.seconds, result.status, response_url


@pytest.fixture(scope="module")
def bot_process(moto_server: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[BotProcess]:
    """The bot served by `python -m bot serve` in a subprocess, against the stand-in and a slow IAM."""
    urllib.request.urlopen(urllib.request.Request(f"{moto_server}/moto-api/reset", method="POST"), timeout=10)
    with pytest.MonkeyPatch.context() as env:  # throwaway credentials, for seeding from this process
        for key, value in FAKE_AWS_ENV.items():
            env.setenv(key, value)
        seed_demo_account(demo_client(moto_server))
    workdir = tmp_path_factory.mktemp("bot")
    with SlackStandIn(members=MEMBERS) as standin, IamProxy(moto_server, delay_seconds=IAM_CALL_DELAY) as proxy:
        database_url = f"sqlite:///{workdir / 'bot.db'}"
        env = bot_env(workdir, standin, proxy.url, database_url, SECRET, DIGEST_CRON="off")
        with serve_process(workdir, env) as (url, process, log_path):
            yield BotProcess(url, standin, proxy, process, log_path)


# The typical ack must stay under 1 s; no ack may reach Slack's own 3 s deadline. The worst case is
# held to Slack's deadline, not to 1 s, so a loaded CI machine cannot fail a server that answers
# everything: the sub-second worst-case figures are benchmarks/slow_clients.py's (README).
TYPICAL_ACK_SECONDS = 1.0
SLACK_ACK_DEADLINE_SECONDS = 3.0


def test_acks_stay_fast_while_a_ten_second_audit_runs(bot_process: BotProcess) -> None:
    standin = bot_process.standin
    bot_process.proxy.reset_counts()
    started = time.monotonic()
    with ThreadPoolExecutor(50) as pool:
        results = list(pool.map(lambda i: bot_process.command("", name=f"load-{i}"), range(50)))
    acks = sorted(seconds for seconds, _, _ in results)
    assert all(status == 200 for _, status, _ in results)
    p50, p99 = statistics.median(acks), acks[int(len(acks) * 0.99) - 1]
    print(f"\nack p50 {p50 * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms, max {acks[-1] * 1000:.0f} ms over {len(acks)}")
    assert p50 < TYPICAL_ACK_SECONDS and acks[-1] < SLACK_ACK_DEADLINE_SECONDS

    def finished() -> bool:
        return all(any(r.payload.get("replace_original") for r in standin.posts_to(url)) for _, _, url in results)

    standin.wait_for(finished, timeout=60)
    audit_seconds = time.monotonic() - started
    print(f"all 50 answered after {audit_seconds:.1f} s")
    assert audit_seconds >= 8.0  # the audit really was slow
    # one audit served all fifty (single flight): one credential report, not fifty
    assert bot_process.proxy.calls["GetCredentialReport"] == 1
    for _, _, url in results:
        final = next(r.payload for r in standin.posts_to(url) if r.payload.get("replace_original"))
        assert final["response_type"] == "ephemeral" and "*Violations:* 3" in str(final["blocks"])


def test_forged_and_replayed_requests_are_refused_with_401(bot_process: BotProcess) -> None:
    response_url = bot_process.standin.response_url("forged")
    body = command_body("exempt bob 30d FORGED-BODY-MARKER", ADMIN, response_url)
    forged = post(bot_process.url, "/slack/events", body, sign(body, "wrong-secret"))
    replayed = post(bot_process.url, "/slack/events", body, sign(body, SECRET, int(time.time()) - 360))
    assert (forged.status, replayed.status) == (401, 401)
    assert forged.seconds < 1.0
    time.sleep(0.5)
    assert not bot_process.standin.posts_to(response_url)
    log = bot_process.log()
    assert "rejected a Slack request (401)" in log
    assert "FORGED-BODY-MARKER" not in log and SECRET not in log and "xoxb-test-token" not in log


def test_non_admin_refusal_over_http_names_no_iam_user(bot_process: BotProcess) -> None:
    _, status, response_url = bot_process.command("user bob", user_id=NOBODY, name="pleb")
    assert status == 200
    bot_process.standin.wait_for(lambda: bot_process.standin.posts_to(response_url), 10)
    (answer,) = bot_process.standin.posts_to(response_url)
    assert answer.payload["response_type"] == "ephemeral" and "Only MFA-bot admins" in answer.text
    for name, *_ in DEMO_USERS:
        assert f"`{name}`" not in answer.text and f" {name} " not in answer.text


SLOW_CONNECTIONS = 200
BIG_BODY_BYTES = 10_000_000


def test_acks_stay_fast_while_200_slow_connections_and_a_10_mb_body_are_open(bot_process: BotProcess) -> None:
    """A bounded loopback load test (benchmarks/slow_clients.py prints the same numbers)."""
    with SlowClients(bot_process.url, SLOW_CONNECTIONS) as slow, ThreadPoolExecutor(2) as pool:
        streamed = pool.submit(big_body, bot_process.url, BIG_BODY_BYTES)
        declared = pool.submit(declared_big_body, bot_process.url, BIG_BODY_BYTES)
        results = ack_times(bot_process.url, SECRET, lambda i: bot_process.standin.response_url(f"slow-{i}"), 20)
        held = slow.still_open()
        big, told = streamed.result(timeout=60), declared.result(timeout=60)
    seconds = sorted(r.seconds for r in results)
    print(f"\n{SLOW_CONNECTIONS} slow connections held ({held} still open), 10 MB bodies answered "
          f"{big.status} in {big.seconds:.2f} s (streamed) and {told.status} in {told.seconds:.2f} s (declared); "
          f"acks+healthz p50 {statistics.median(seconds) * 1000:.0f} ms, max {seconds[-1] * 1000:.0f} ms")  # fmt: skip
    assert held == SLOW_CONNECTIONS  # the slow clients really were connected throughout
    assert [r.status for r in results] == [200] * len(results)
    assert statistics.median(seconds) < TYPICAL_ACK_SECONDS and seconds[-1] < SLACK_ACK_DEADLINE_SECONDS
    assert (big.status, told.status) == (413, 413) and told.seconds < TYPICAL_ACK_SECONDS
    assert "Traceback" not in bot_process.log()


def test_health_endpoint(bot_process: BotProcess) -> None:
    health = get(bot_process.url, "/healthz")
    assert health.status == 200 and json.loads(health.body) == {"ok": True, "database": "ok"}


def test_serve_refuses_to_start_without_a_signing_secret(tmp_path: Path) -> None:
    env = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(REPO), "SLACK_BOT_TOKEN": "xoxb-secret-value"}
    done = subprocess.run(
        [sys.executable, "-m", "bot", "serve"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1] == (
        "error: SLACK_SIGNING_SECRET is required for this command but is not set"
    )
    assert "xoxb-secret-value" not in done.stderr + done.stdout
