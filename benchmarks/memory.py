"""Benchmark: peak memory of `python -m bot check --json` as a process, at 10,000 users.

Seeds N IAM users in moto's server (default 10,000: 7,000 with a console password, 1,000 of those
without MFA), then runs `python -m bot check --json` as its own process against it, the way a user
runs it: a cold credential report and a fresh SQLite store (the run records its scan and keeps its
findings). Prints the process's peak resident set size (ru_maxrss) with its wall and CPU time;
each run must find exactly the seeded violators. Target: under 150 MB.

    python -m benchmarks.memory [--users 10000] [--console 7000] [--violators 1000] [--runs 2]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from concurrent.futures import ThreadPoolExecutor

from benchmarks.process import aws_stand_in, load_average, run_check
from bot.demo import add_user, demo_client

TARGET_MB = 150.0


def seed(iam, users: int, console: int, violators: int) -> set[str]:
    """Create the users (the first `violators` have a password and no MFA); return their names."""

    def create(i: int) -> None:
        add_user(iam, f"user{i:05d}", console=i < console, mfa="virtual" if violators <= i < console else None)

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(create, range(users)))
    return {f"user{i:05d}" for i in range(violators)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--console", type=int, default=7_000)
    parser.add_argument("--violators", type=int, default=1_000)
    parser.add_argument("--runs", type=int, default=2, help="check processes, each with a fresh database")
    args = parser.parse_args()
    os.environ.update(
        AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", AWS_DEFAULT_REGION="us-east-1",
        AWS_EC2_METADATA_DISABLED="true",
    )  # fmt: skip

    ok = True
    with aws_stand_in(delay_ms=0) as aws, tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        expected = seed(demo_client(aws.moto_url), args.users, args.console, args.violators)
        print(f"seeded {args.users} users ({args.console} console, {args.violators} without MFA) "
              f"in {time.perf_counter() - started:.1f} s")  # fmt: skip
        peaks = []
        for run in range(args.runs):
            env = {
                "AWS_ENDPOINT_URL": aws.proxy_url,
                "DATABASE_URL": f"sqlite:///{tmp}/memory-{run}.db",
                "SLACK_BOT_TOKEN": "",
            }
            aws.cold_report()
            print(f"load average before run {run + 1}: {load_average()}")
            check = run_check(env)
            found = check.violators()
            peaks.append(check.peak_rss_mb)
            print(f"check run {run + 1}: peak RSS {check.peak_rss_mb:.1f} MB, {check.wall:.2f} s wall, "
                  f"{check.cpu:.2f} s CPU, exit {check.exit_code}, {len(found)} violators found")  # fmt: skip
            if found != expected or check.exit_code != 1:
                print(f"  wrong result: {check.stderr.strip()[-500:]}")
                ok = False
    peak = max(peaks)
    print(f"peak RSS of check at {args.users} users, {args.violators} violators: {peak:.1f} MB "
          f"(target < {TARGET_MB:.0f} MB)")  # fmt: skip
    ok = ok and peak < TARGET_MB
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
