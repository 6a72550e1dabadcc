"""How long opening the App Home takes for a big account: 10,000 IAM users, 1,000 of them violating.

    python -m benchmarks.home [--users 10000] [--violators 1000] [--opens 20]

A synthetic audit is recorded into a SQLite store (scans, episodes, the kept findings), then the
Home is published through the Slack stand-in for a person (one IAM user) and an admin: the first
open decodes the kept findings, later opens reuse them while the store says they are current.
Prints milliseconds per step and the size of the kept findings and of the published view.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bot.config import Config
from bot.home_tab import HomeTab
from bot.identity import IdentityChain, Roles, SlackDirectory
from bot.models import AccountFindings, AuditResult, MfaDevice, RootStatus, UserFinding
from bot.service import record_result
from bot.services import build_services
from bot.slack import make_web_client
from bot.store import Store
from tests.slack_standin import ADMIN, MEMBERS, SlackStandIn

ACCOUNT = "123456789012"
PERSON = "U0BOB0001"


def synthetic(users: int, violators: int, at: datetime) -> AuditResult:
    """One account of `users` IAM users, the first `violators` without MFA; user 0 is PERSON's."""
    found = []
    for i in range(users):
        violating = i < violators
        found.append(
            UserFinding(
                account_id=ACCOUNT,
                user_name=f"user-{i:05d}",
                arn=f"arn:aws:iam::{ACCOUNT}:user/user-{i:05d}",
                console_access=True,
                mfa_devices=() if violating else (MfaDevice(f"arn:aws:iam::{ACCOUNT}:mfa/user-{i:05d}", "virtual"),),
                status="violation" if violating else "compliant",
                reason="console password, no MFA device" if violating else None,
                console_since=at - timedelta(days=i % 90),
                tags={"slack-user-id": PERSON} if i == 0 else {},
            )
        )
    account = AccountFindings(ACCOUNT, "acme", None, at, RootStatus(mfa_enabled=True, hardware=True), found)
    return AuditResult(generated_at=at, accounts=[account])


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def main(argv: Sequence[str] | None = None) -> int:
    """Record the audit, open the Home cold and warm, print the timings."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--violators", type=int, default=1_000)
    parser.add_argument("--opens", type=int, default=20)
    args = parser.parse_args(argv)

    now = datetime.now(UTC)
    with tempfile.TemporaryDirectory() as tmp, SlackStandIn(members=MEMBERS) as standin:
        store = Store.open(f"sqlite:///{Path(tmp) / 'bench.db'}")
        config = Config(slack_bot_token="xoxb-bench", slack_api_url=standin.api_url, admin_user_ids=frozenset({ADMIN}))
        client = make_web_client(config)
        services = build_services(
            config, client, store, identity=IdentityChain(SlackDirectory(client)), roles=Roles(config.admin_user_ids)
        )
        tab = HomeTab(services)
        result = synthetic(args.users, args.violators, now)

        started = time.perf_counter()
        record_result(store, result, now, now)
        recorded = time.perf_counter() - started
        kept = store.snapshots()[0].findings
        print(f"record the audit ({args.users} users, {args.violators} violators): {_ms(recorded)}")
        print(f"kept findings: {len(kept) / 1e6:.2f} MB of JSON")

        for who in (PERSON, ADMIN):
            started = time.perf_counter()
            assert tab.opened(who), "views.publish was refused"
            cold = time.perf_counter() - started
            warm = []
            for _ in range(args.opens):
                started = time.perf_counter()
                tab.publish(who)
                warm.append(time.perf_counter() - started)
            view = json.loads(standin.calls("views.publish")[-1].text)["view"]
            print(
                f"{'person' if who == PERSON else 'admin':<6} first open {_ms(cold)}, then median "
                f"{_ms(statistics.median(warm))} (max {_ms(max(warm))}) over {args.opens}; "
                f"view {len(view['blocks'])} blocks, {len(json.dumps(view)) / 1000:.1f} kB"
            )
            tab._kept.clear()  # the next person's first open decodes again
        store.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
