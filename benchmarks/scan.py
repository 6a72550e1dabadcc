"""Benchmark: the project's scan against the naive scan AWS documents, over a delayed local IAM.

Seeds N users in moto (default 1,000: 700 with a console password, 100 of those without MFA, 50
with a hardware token instead of a virtual device), run in a process of its own behind a proxy
that delays every call (default 25 ms, standing in for the network to AWS) and counts calls per
action (`benchmarks.process.aws_stand_in`, as benchmarks/accounts.py uses: the stand-in shares
no interpreter lock with what it answers), then runs:
- the project's scan (`bot.service.run_audit`, exactly what `python -m bot check` runs, CloudTrail
  freshness included, LookupEvents paced at CloudTrail's 2 requests a second);
- the naive scan: list-users, then get-login-profile and list-mfa-devices per user, in order.
Both must find the same violators, and the project's calls must stay within the per-account budget
12 + 3V + H + CloudTrail pages (V: users the report flags, H: users with MFA but no virtual device).
Prints wall time, calls, CPU seconds and the ratios.
Then the way a user runs it: `python -m bot check --json` as its own process (interpreter start,
imports, the store, the audit, the JSON), each run with a cold credential report, on a fresh
SQLite database (created and migrated) and again on that warm one; the medians of `--runs` runs
of each, and their ratios to the naive scan (targets: fresh >= 25x, warm >= 30x).

    python -m benchmarks.scan [--users 1000] [--console 700] [--violators 100] [--hardware 50] [--delay-ms 25] \
        [--runs 3] [--profile]

`--profile` adds where one whole process spends its CPU (benchmarks/cpu_profile.py): by category
(imports, client creation, signing, response parsing, HTTP, the audit, the store, the output),
and its slowest imports under `python -X importtime`.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from botocore.exceptions import ClientError

from benchmarks.cpu_profile import profile_check
from benchmarks.process import AwsStandIn, aws_stand_in, load_average, median, run_check
from bot import service
from bot.config import Config
from bot.demo import add_user, demo_client


def seed(iam, users: int, console: int, violators: int, hardware: int) -> set[str]:
    """Create the users; return the names of those who must be found (console, no MFA)."""

    def create(i: int) -> None:
        mfa = None
        if violators <= i < console:
            mfa = "hardware" if i < violators + hardware else "virtual"
        add_user(iam, f"user{i:05d}", console=i < console, mfa=mfa)

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(create, range(users)))
    return {f"user{i:05d}" for i in range(violators)}


def naive_scan(iam) -> set[str]:
    """The documented procedure: every user, one after another."""
    found = set()
    for page in iam.get_paginator("list_users").paginate():
        for user in page["Users"]:
            name = user["UserName"]
            try:
                iam.get_login_profile(UserName=name)
            except ClientError as exc:
                if exc.response["Error"]["Code"] == "NoSuchEntity":
                    continue
                raise
            if not iam.list_mfa_devices(UserName=name)["MFADevices"]:
                found.add(name)
    return found


def timed(fn):
    wall, cpu = time.perf_counter(), time.process_time()
    result = fn()
    return result, time.perf_counter() - wall, time.process_time() - cpu


def whole_process_runs(stand_in: AwsStandIn, runs: int, expected: set[str]) -> dict[str, list[float]]:
    """Wall seconds of `python -m bot check --json` runs: a fresh database, then the same one warm."""
    walls: dict[str, list[float]] = {"fresh": [], "warm": []}
    with tempfile.TemporaryDirectory() as tmp:
        for run in range(runs):
            env = {"AWS_ENDPOINT_URL": stand_in.proxy_url, "DATABASE_URL": f"sqlite:///{tmp}/check-{run}.db"}
            for kind in walls:
                stand_in.cold_report()
                check = run_check(env)
                if check.exit_code != 1 or check.violators() != expected:
                    raise SystemExit(f"check run {run + 1} ({kind}) went wrong: {check.stderr.strip()[-300:]}")
                walls[kind].append(check.wall)
                print(f"  check --json, {kind} database: {check.wall:.2f}s wall, {check.cpu:.2f}s CPU "
                      f"(load {load_average()})")  # fmt: skip
    return walls


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=1000)
    parser.add_argument("--console", type=int, default=700)
    parser.add_argument("--violators", type=int, default=100)
    parser.add_argument("--hardware", type=int, default=50, help="compliant console users with a hardware token")
    parser.add_argument("--delay-ms", type=float, default=25.0)
    parser.add_argument("--skip-naive", action="store_true", help="only the project's scan")
    parser.add_argument("--runs", type=int, default=3, help="whole-process runs of each kind (0: none)")
    parser.add_argument("--profile", action="store_true", help="also profile one whole process (warm database)")
    args = parser.parse_args()
    os.environ.update(
        AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", AWS_DEFAULT_REGION="us-east-1",
        AWS_EC2_METADATA_DISABLED="true",
    )  # fmt: skip

    with aws_stand_in(args.delay_ms) as stand_in:
        started = time.perf_counter()
        expected = seed(demo_client(stand_in.moto_url), args.users, args.console, args.violators, args.hardware)
        print(f"seeded {args.users} users ({args.console} console, {args.violators} without MFA) "
              f"in {time.perf_counter() - started:.1f}s")  # fmt: skip
        config = Config(aws_endpoint_url=stand_in.proxy_url)
        stand_in.cold_report()
        stand_in.stats(reset=True)
        result, scan_wall, scan_cpu = timed(lambda: service.run_audit(config))
        stats = stand_in.stats()
        scan_calls = dict(stats["calls"])
        found = {u.user_name for u in result.violations}
        assert result.accounts[0].error is None, result.accounts[0].error
        pages = scan_calls.get("LookupEvents", 0)
        budget = 12 + 3 * args.violators + args.hardware + pages
        print(f"project scan: {scan_wall:.2f}s wall, {scan_cpu:.2f}s CPU, {sum(scan_calls.values())} calls "
              f"(budget 12 + 3 x {args.violators} + {args.hardware} + {pages} CloudTrail pages = {budget}), "
              f"max {stats['max_in_flight']} in flight, found {len(found)} violators, "
              f"{result.accounts[0].cloudtrail_error or 'CloudTrail read'}")  # fmt: skip
        print("  calls: " + ", ".join(f"{k}={v}" for k, v in sorted(scan_calls.items())))
        ok = found == expected and sum(scan_calls.values()) <= budget and pages >= 3
        whole = whole_process_runs(stand_in, args.runs, expected) if args.runs else {}
        if args.profile:
            with tempfile.TemporaryDirectory() as tmp:
                env = {"AWS_ENDPOINT_URL": stand_in.proxy_url, "DATABASE_URL": f"sqlite:///{tmp}/profile.db"}
                run_check(env, ("migrate",))
                print("\n".join(profile_check(env, before_each=stand_in.cold_report).lines()))
        for kind, walls in whole.items():
            print(f"whole process ({kind} database): {median(walls):.2f}s median of {len(walls)} "
                  f"(in-process audit {scan_wall:.2f}s)")  # fmt: skip
        if not args.skip_naive:
            stand_in.stats(reset=True)
            naive_found, naive_wall, naive_cpu = timed(lambda: naive_scan(demo_client(stand_in.proxy_url)))
            naive_calls = sum(stand_in.stats()["calls"].values())
            print(f"naive scan:   {naive_wall:.2f}s wall, {naive_cpu:.2f}s CPU, {naive_calls} calls, "
                  f"found {len(naive_found)} violators")  # fmt: skip
            ratio = naive_wall / scan_wall
            call_ratio = naive_calls / sum(scan_calls.values())
            print(f"speed-up: {ratio:.1f}x (target >= 15x); calls: {call_ratio:.1f}x fewer")
            print(f"same violators as the naive scan: {naive_found == found}")
            ok = ok and naive_found == expected and ratio >= 15
            for kind, target in (("fresh", 25), ("warm", 30)):
                if kind in whole:
                    whole_ratio = naive_wall / median(whole[kind])
                    print(f"whole process, {kind} database: {whole_ratio:.1f}x the naive scan (target >= {target}x)")
                    ok = ok and whole_ratio >= target
        print(f"same violators as seeded: {found == expected}")
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
