"""Benchmark: "Nudge all" for 300 people against a Slack stand-in that limits like Slack does.

The stand-in limits `chat.postMessage` per channel (1 a second, short bursts) and workspace-wide
by a cap (`--cap` per minute) that the bot is NOT told: Slack does not publish it. `chat.update`
is Tier 3 (50 a minute). A 429 carries Retry-After in whole seconds, as Slack sends it; every
Web API answer takes `--latency` seconds, like a real network. The bot runs exactly as in
`serve`: a digest listing everyone is posted, "Nudge all" enqueues one outbox item per person,
and the nudge worker threads deliver them (chat.postMessage with the user ID as channel, paced per
channel and by the adaptive workspace-wide rate) and update the digest rows.

Prints the DMs sent, duplicates and lost (both must be 0), 429s answered, the total time, the
floor the cap allows (people / cap), and the rate the bot had ramped to.
Acceptance at the default cap (300/min): 300 DMs in <= 120 s with fewer than 10 429s; at any
cap (e.g. `--cap 60`): every DM sent once, nothing lost, slower.

    python -m benchmarks.nudge_all [--people 300] [--cap 300] [--latency 0.1] [--noise 0] [--speed 1]

`--speed 10` runs every rate (Slack's emulated limits and the bot's pacing) ten times faster, for a
quick check; the acceptance numbers are the ones at `--speed 1` (one to six minutes).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bot.digest import post_scheduled_digest
from bot.identity import IdentityChain, SlackDirectory
from bot.models import AccountFindings, AuditResult, RootStatus, UserFinding
from bot.nudges import Nudger, NudgeWorker
from bot.pacing import DOCUMENTED_RATES, PER_CHANNEL, PacedSlack
from bot.service import record_result
from bot.services import build_services
from bot.slack import make_web_client
from bot.store import Store
from tests.slack_standin import MEMBERS, SlackStandIn, person
from tests.workflow_helpers import ADMIN, config_for

ACCOUNT = "123456789012"
SLACK_BURST = 3  # "short bursts" allowed per channel and for Tier 3


def audit_of(people: int) -> AuditResult:
    """One account, one violating IAM user per person (found by the slack-user-id tag)."""
    now = datetime.now(UTC)
    users = [
        UserFinding(
            account_id=ACCOUNT,
            user_name=f"engineer{i:04d}",
            arn=f"arn:aws:iam::{ACCOUNT}:user/engineer{i:04d}",
            console_access=True,
            mfa_devices=(),
            status="violation",
            reason="console password, no MFA device",
            tags={"slack-user-id": f"U{i:08d}"},
        )
        for i in range(people)
    ]
    account = AccountFindings(ACCOUNT, "bench", None, now, RootStatus(True, True), users)
    return AuditResult(generated_at=now, accounts=[account])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--people", type=int, default=300)
    parser.add_argument("--cap", type=float, default=300.0, help="the workspace-wide cap per minute (not told the bot)")
    parser.add_argument("--latency", type=float, default=0.1, help="seconds each Web API answer takes")
    parser.add_argument("--noise", type=float, default=0.0, help="share of extra random 429s per call")
    parser.add_argument("--speed", type=float, default=1.0, help="rates x this (1 = Slack's real pace)")
    args = parser.parse_args()

    speed = args.speed
    members = list(MEMBERS) + [person(f"U{i:08d}", f"engineer{i}@example.com") for i in range(args.people)]
    with tempfile.TemporaryDirectory() as tmp, SlackStandIn(members=members) as standin:
        whole = speed == 1.0
        per_channel = PER_CHANNEL.per_second * speed
        standin.emulate_rate_limit("chat.postMessage", per_channel, SLACK_BURST, whole, per_channel=True)
        standin.emulate_workspace_cap("chat.postMessage", args.cap * speed)
        tier_3 = DOCUMENTED_RATES["chat.update"].per_second * speed
        standin.emulate_rate_limit("chat.update", tier_3, SLACK_BURST, whole)
        if args.noise:
            standin.inject_429s("chat.postMessage", args.noise, retry_after=1.0 / speed)
        config = config_for(standin)
        client = make_web_client(config)
        slack = PacedSlack.scaled(client, speed)  # documented rates only: the cap is not configured

        with Store.open(f"sqlite:///{tmp}/bench.db") as store:

            def audit() -> AuditResult:
                result = audit_of(args.people)
                record_result(store, result, result.generated_at, result.generated_at)
                return result

            desk = build_services(
                config,
                client,
                store,
                slack,
                run_audit=audit,
                identity=IdentityChain(directory=SlackDirectory(client)),
                recent_seconds=0,
            )
            digest = post_scheduled_digest(desk, datetime.now(UTC))
            print(f"digest: {digest.rows} rows in {digest.messages} messages")
            standin.latency = args.latency / speed
            standin.rate_limited.clear()
            nudger = Nudger(desk)
            worker = NudgeWorker(nudger, flush_seconds=15 / speed)
            started = time.perf_counter()
            queued = nudger.enqueue_all(ADMIN)
            worker.start()
            while store.pending_nudges(limit=1):
                time.sleep(0.05)
            total = time.perf_counter() - started
            worker.stop()
            outcomes = Counter(a.outcome for a in store.actions(limit=args.people * 2, action="nudge"))
            pending = len(store.pending_nudges())
        people = {f"U{i:08d}" for i in range(args.people)}
        dms = Counter(
            r.payload["channel"] for r in standin.accepted("chat.postMessage") if r.payload["channel"] in people
        )
        duplicates = sum(n - 1 for n in dms.values())
        lost = len(people - set(dms)) + pending
        updates = len(standin.accepted("chat.update"))
        refused = standin.rate_limited.get("chat.postMessage", 0)
    floor = args.people / (args.cap / 60) / speed
    print(
        f"queued {queued.queued} DMs for {queued.people} people; workspace cap {args.cap:g}/min (not told the bot), "
        f"{args.latency:g} s latency, speed {speed:g}x"
    )
    print(f"DMs sent: {len(dms)}; duplicates: {duplicates}; lost: {lost}; outcomes: {dict(outcomes)}")
    print(f"429s answered: {dict(standin.rate_limited)} (all waited out); digest row updates: {updates}")
    print(
        f"total time: {total:.1f} s ({total * speed:.1f} s at Slack's pace); the cap's floor {floor:.1f} s; "
        f"workspace rate at the end {slack.workspace_rate('chat.postMessage') / speed * 60:.0f}/min"
    )
    ok = len(dms) == args.people and duplicates == 0 and lost == 0 and outcomes.get("sent") == args.people
    if args.cap >= 300:
        ok = ok and total * speed <= 120 and refused < 10
        print("acceptance (cap 300/min): <= 120 s, < 10 429s, 0 duplicates, 0 lost")
    else:
        print("acceptance (lower cap): every DM sent once, nothing lost")
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
