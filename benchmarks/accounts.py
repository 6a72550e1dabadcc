"""Benchmark: many accounts, AWS_MAX_CONCURRENCY=8 against 1, at 100 ms a call.

An AWS Organization of N member accounts (default 50) x U users (default 200: 140 with a console
password, 20 of those without MFA) in moto's server, in its own process behind a proxy that
delays every call (default 100 ms: IAM's one endpoint seen from another continent). The bot
audits the whole organization through assumed roles twice, 1 account at a time and 8 at a
time, and prints wall time, CPU seconds (the bot's and the AWS stand-in's), calls and the ratio.

    python -m benchmarks.accounts [--accounts 50] [--users 200] [--delay-ms 100]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


from bot import service  # noqa: E402
from bot.config import Config  # noqa: E402
from bot.demo import DEMO_REGION, add_user, demo_client, role_client  # noqa: E402

ROLE = "MfaBotAudit"


def child_cpu_seconds(pid: int) -> float:
    """utime + stime of a running process, from /proc (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def seed_account(moto_url: str, account_id: str, users: int, console: int, violators: int) -> set[tuple[str, str]]:
    """Create the users of one member account; return the (account, user) pairs to be found."""
    iam = role_client(moto_url, account_id, ROLE)
    for i in range(users):
        add_user(iam, f"u{i:04d}", console=i < console, mfa="virtual" if violators <= i < console else None)
    return {(account_id, f"u{i:04d}") for i in range(violators)}


def proxy_stats(proxy_url: str, reset: bool = False) -> dict:
    request = urllib.request.Request(f"{proxy_url}/__proxy__/{'reset' if reset else 'stats'}", method="POST")
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=50)
    parser.add_argument("--users", type=int, default=200)
    parser.add_argument("--console", type=int, default=140)
    parser.add_argument("--violators", type=int, default=20)
    parser.add_argument("--delay-ms", type=float, default=100.0)
    args = parser.parse_args()
    os.environ.update(
        AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", AWS_SESSION_TOKEN="testing",
        AWS_DEFAULT_REGION=DEMO_REGION, AWS_EC2_METADATA_DISABLED="true",
    )  # fmt: skip
    stand_in = subprocess.Popen(
        [sys.executable, "-m", "tests.iam_proxy", "--delay-ms", str(args.delay_ms)],
        cwd=ROOT, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        urls = dict(part.split("=", 1) for part in stand_in.stdout.readline().split())
        moto_url, proxy_url = urls["moto"], urls["proxy"]
        started = time.perf_counter()
        org = demo_client(moto_url, "organizations")
        org.create_organization(FeatureSet="ALL")
        ids = [
            org.create_account(AccountName=f"acct{i:02d}", Email=f"a{i}@example.com")["CreateAccountStatus"][
                "AccountId"
            ]
            for i in range(args.accounts)
        ]
        with ThreadPoolExecutor(4) as pool:
            seeded = pool.map(lambda a: seed_account(moto_url, a, args.users, args.console, args.violators), ids)
            expected = set().union(*seeded)
        print(f"seeded {args.accounts} accounts x {args.users} users ({args.violators} violators each) "
              f"in {time.perf_counter() - started:.0f}s; delay {args.delay_ms:g} ms a call")  # fmt: skip

        base = Config(aws_endpoint_url=proxy_url, aws_organization=True, aws_role_name=ROLE)
        # Warm-up: every account's credential report is generated once, so both measured runs find
        # it ready (as on AWS, where a report stays fresh for four hours).
        service.run_audit(dataclasses.replace(base, aws_max_concurrency=8))
        runs = {}
        for concurrency in (1, 8):
            proxy_stats(proxy_url, reset=True)
            cpu_aws, cpu_bot, wall = child_cpu_seconds(stand_in.pid), time.process_time(), time.perf_counter()
            result = service.run_audit(dataclasses.replace(base, aws_max_concurrency=concurrency))
            wall = time.perf_counter() - wall
            cpu_bot, cpu_aws = time.process_time() - cpu_bot, child_cpu_seconds(stand_in.pid) - cpu_aws
            stats = proxy_stats(proxy_url)
            findings = {(u.account_id, u.user_name, u.status) for a in result.accounts for u in a.users}
            found = {(u.account_id, u.user_name) for u in result.violations}
            errors = [a.error for a in result.accounts if a.error]
            runs[concurrency] = (wall, findings)
            print(f"AWS_MAX_CONCURRENCY={concurrency}: {wall:.1f}s wall; CPU bot {cpu_bot:.1f}s, AWS stand-in "
                  f"{cpu_aws:.1f}s; {sum(stats['calls'].values())} calls; accounts in flight: peak "
                  f"{result.peak_accounts_in_flight} (proxy saw {stats['max_keys_in_flight']} credentials at once); "
                  f"{len(result.accounts)} accounts, {len(found)} violators, {len(errors)} errors")  # fmt: skip
            if errors or found != expected:
                print(f"FAIL: errors {errors[:3]}, violators match seeded: {found == expected}")
                return 1
        ratio = runs[1][0] / runs[8][0]
        same = runs[1][1] == runs[8][1]
        print(f"speed-up with 8 accounts at a time: {ratio:.1f}x (target >= 5x); same findings: {same}")
        ok = ratio >= 5 and same
        print("PASS" if ok else "FAIL")
        return 0 if ok else 1
    finally:
        stand_in.terminate()
        stand_in.wait(timeout=10)


if __name__ == "__main__":
    sys.exit(main())
