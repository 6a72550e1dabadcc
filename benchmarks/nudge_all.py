"""Benchmark: "Nudge all" for 300 people against a Slack stand-in that rate-limits like Slack documents.

The stand-in answers `chat.postMessage` (about 1 message per second, short bursts),
`conversations.open` and `chat.update` (Tier 3: 50 per minute, sporadic bursts) through a token
bucket each, with a 429 and Retry-After (whole seconds, as Slack sends them) when the bucket is
empty, plus a share of random 429s (a busy workspace). The bot runs exactly as in `serve`: a
digest listing everyone is posted, "Nudge all" enqueues one outbox item per person, and the
nudge worker threads deliver them (paced) and update the digest rows.

Prints the DMs sent, duplicates (must be 0), 429s answered, and the total time against the
pacing bound: the least time the documented rates allow for that many DMs (each DM needs one
conversations.open and one chat.postMessage; the emulated bursts are spent first).
Acceptance: every DM sent, 0 duplicates, total time within 1.3x of the bound.

    python -m benchmarks.nudge_all [--people 300] [--speed 1] [--noise 0.02]

`--speed 10` runs every rate (Slack's emulated limits and the bot's pacing) ten times faster, for a
quick check; the acceptance numbers are the ones at `--speed 1` (about six minutes).
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

from bot.digest import Desk, post_scheduled_digest
from bot.identity import IdentityChain, SlackDirectory
from bot.models import AccountFindings, AuditResult, RootStatus, UserFinding
from bot.nudges import Nudger, NudgeWorker
from bot.pacing import DOCUMENTED_RATES, Rate, pacing_bound
from bot.service import record_result
from bot.slack import make_web_client
from bot.store import Store
from tests.slack_standin import MEMBERS, SlackStandIn, person
from tests.workflow_helpers import ADMIN, config_for

ACCOUNT = "123456789012"
SLACK_BURST = {"chat.postMessage": 3, "conversations.open": 3, "chat.update": 3}  # "short bursts" allowed


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
    parser.add_argument("--speed", type=float, default=1.0, help="rates x this (1 = Slack's documented rates)")
    parser.add_argument("--noise", type=float, default=0.02, help="share of extra random 429s per call")
    args = parser.parse_args()

    slack_rates = {m: Rate(r.per_second * args.speed, SLACK_BURST[m]) for m, r in DOCUMENTED_RATES.items()}
    bot_rates = {m: r.scaled(args.speed) for m, r in DOCUMENTED_RATES.items()}
    members = list(MEMBERS) + [person(f"U{i:08d}", f"engineer{i}@example.com") for i in range(args.people)]
    with tempfile.TemporaryDirectory() as tmp, SlackStandIn(members=members) as standin:
        whole_seconds = args.speed == 1.0
        for method, rate in slack_rates.items():
            standin.emulate_rate_limit(method, rate.per_second, rate.burst, integer_retry_after=whole_seconds)
            standin.inject_429s(method, args.noise, retry_after=1.0 / args.speed, seed=hash(method) % 1000)
        config = config_for(standin)
        client = make_web_client(config)
        from bot.pacing import PacedSlack

        with Store.open(f"sqlite:///{tmp}/bench.db") as store:

            def audit() -> AuditResult:
                result = audit_of(args.people)
                record_result(store, result, result.generated_at, result.generated_at)
                return result

            desk = Desk.create(
                config,
                client,
                store,
                slack=PacedSlack(client, bot_rates),
                identity=IdentityChain(directory=SlackDirectory(client)),
                fresh_audit=audit,
                recent_audit=audit,
            )
            digest = post_scheduled_digest(desk, datetime.now(UTC))
            print(f"digest: {digest.rows} rows in {digest.messages} messages")
            standin.rate_limited.clear()
            nudger = Nudger(desk)
            worker = NudgeWorker(nudger, flush_seconds=15 / args.speed)
            started = time.perf_counter()
            queued = nudger.enqueue_all(ADMIN)
            worker.start()
            while store.pending_nudges(limit=1):
                time.sleep(0.05)
            total = time.perf_counter() - started
            worker.stop()
            outcomes = Counter(a.outcome for a in store.actions(limit=args.people * 2, action="nudge"))
        dms = Counter(
            r.payload["channel"] for r in standin.accepted("chat.postMessage") if r.payload["channel"][0] == "D"
        )
        duplicates = sum(n - 1 for n in dms.values())
        updates = len(standin.accepted("chat.update"))
    bound = pacing_bound(queued.queued, slack_rates, ["chat.postMessage", "conversations.open"])
    ratio = total / bound if bound else float("inf")
    print(f"queued {queued.queued} DMs for {queued.people} people at {args.speed:g}x Slack's documented rates")
    print(f"DMs sent: {len(dms)}; duplicates: {duplicates}; outcomes: {dict(outcomes)}")
    print(f"429s answered: {dict(standin.rate_limited)} (all waited out); digest row updates: {updates}")
    print(f"total time: {total:.1f} s; pacing bound: {bound:.1f} s; ratio {ratio:.2f} (acceptance <= 1.3)")
    ok = len(dms) == args.people and duplicates == 0 and outcomes.get("sent") == args.people and ratio <= 1.3
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
