"""Benchmark: many accounts, AWS_MAX_CONCURRENCY=8 against 1, at 100 ms a call.

An AWS Organization of N member accounts (default 50) x U users (default 200: 140 with a console
password, 20 of those without MFA) in moto's server, in its own process behind a proxy that
delays every call (default 100 ms: IAM's one endpoint seen from another continent). The bot
audits the whole organization through assumed roles twice, 1 account at a time and 8 at a
time, and prints wall time, CPU seconds (the bot's and the AWS stand-in's), calls and the ratio.

`--worst-case` runs it the way a user does and AWS can be at its least kind: `python -m bot
check --json` as its own process (interpreter start, imports, store, JSON), every account's
credential report cold before each run (GenerateCredentialReport answers STARTED), and a stand-in
that closes every connection (as moto's own server does: a new TCP connection per call).

    python -m benchmarks.accounts [--accounts 50] [--users 200] [--delay-ms 100]
                                  [--worst-case [--runs 3] [--profile] [--audit-processes auto|N]]

`--runs N` repeats the worst case N times (1 and 8 alternating) and compares the medians; `--profile`
adds where the bot's CPU goes per account (benchmarks/cpu_profile.py, one process 8 at a time);
`--audit-processes` sets AUDIT_PROCESSES (worker processes) for the checks. Each run prints how many
connections the kernel dropped for a full listen backlog meanwhile (each one a 1 s SYN retransmission
on the bot's side): it should be 0, or the stand-in is measuring itself.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


from benchmarks.cpu_profile import profile_check  # noqa: E402
from benchmarks.process import AwsStandIn, CheckRun, aws_stand_in, load_average, median, run_check  # noqa: E402
from bot import service  # noqa: E402
from bot.config import Config  # noqa: E402
from bot.demo import DEMO_REGION, add_user, demo_client, role_client  # noqa: E402

ROLE = "MfaBotAudit"


def seed_account(moto_url: str, account_id: str, users: int, console: int, violators: int) -> set[tuple[str, str]]:
    """Create the users of one member account; return the (account, user) pairs to be found."""
    iam = role_client(moto_url, account_id, ROLE)
    for i in range(users):
        add_user(iam, f"u{i:04d}", console=i < console, mfa="virtual" if violators <= i < console else None)
    return {(account_id, f"u{i:04d}") for i in range(violators)}


def _organization_env(stand_in: AwsStandIn, concurrency: int, processes: str = "auto") -> dict[str, str]:
    return {
        "AWS_ENDPOINT_URL": stand_in.proxy_url,
        "AWS_ORGANIZATION": "true",
        "AWS_ROLE_NAME": ROLE,
        "AWS_MAX_CONCURRENCY": str(concurrency),
        "AUDIT_PROCESSES": processes,
    }


def listen_overflows() -> int | None:
    """The kernel's count of connections dropped because a listening socket's backlog was full (Linux).

    Each one costs the caller a SYN retransmission (1 s): a stand-in that overflows measures itself."""
    try:
        lines = [
            line.split() for line in Path("/proc/net/netstat").read_text().splitlines() if line.startswith("TcpExt:")
        ]
        return int(lines[1][lines[0].index("ListenOverflows")])
    except (OSError, ValueError, IndexError):
        return None


def whole_process(
    stand_in: AwsStandIn, concurrency: int, database_url: str, processes: str = "auto"
) -> tuple[float, float, CheckRun]:
    """One `python -m bot check --json` over the organization, every report cold: (wall, stand-in CPU, run)."""
    stand_in.cold_report()
    stand_in.stats(reset=True)
    cpu_aws = stand_in.cpu_seconds()
    check = run_check({**_organization_env(stand_in, concurrency, processes), "DATABASE_URL": database_url})
    return check.wall, stand_in.cpu_seconds() - cpu_aws, check


def worst_case(
    stand_in: AwsStandIn,
    expected: set[tuple[str, str]],
    runs: int = 1,
    profile: bool = False,
    processes: str = "auto",
) -> int:
    """Whole process, cold reports, a closing stand-in: 1 account at a time against 8, `runs` times
    each (alternating), medians compared; `profile` adds the bot's CPU per account. `processes` is
    AUDIT_PROCESSES for both (1 at a time never uses workers)."""
    walls: dict[int, list[float]] = {1: [], 8: []}
    findings_seen: dict[int, set[tuple[str, str, str]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        database_url = f"sqlite:///{tmp}/bot.db"
        run_check({"DATABASE_URL": database_url}, ("migrate",))  # the store's schema, once: both runs alike
        for run in range(runs):
            for concurrency in (1, 8):
                print(f"load average: {load_average()}")
                overflows = listen_overflows()
                wall, cpu_aws, check = whole_process(stand_in, concurrency, database_url, processes)
                dropped = listen_overflows()
                dropped = None if dropped is None or overflows is None else dropped - overflows
                stats = stand_in.stats()
                accounts = (check.document or {}).get("accounts", [])
                findings = {(a["account_id"], u["user_name"], u["status"]) for a in accounts for u in a["users"]}
                found = {(a, n) for a, n, status in findings if status == "violation"}
                errors = [a["error"] for a in accounts if a["error"]]
                walls[concurrency].append(wall)
                if findings_seen.setdefault(concurrency, findings) != findings:
                    print(f"FAIL: run {run + 1} at {concurrency} found other findings than run 1")
                    return 1
                print(f"check --json, AWS_MAX_CONCURRENCY={concurrency}: {wall:.1f}s wall; CPU bot {check.cpu:.1f}s, "
                      f"AWS stand-in {cpu_aws:.1f}s; {sum(stats['calls'].values())} calls "
                      f"(the proxy saw {stats['max_keys_in_flight']} credentials at once); {len(accounts)} accounts, "
                      f"{len(found)} violators, {len(errors)} errors, exit {check.exit_code}; "
                      f"connections dropped by a full listen backlog (whole machine): {dropped}")  # fmt: skip
                if errors or found != expected:
                    print(f"FAIL: errors {errors[:3]}, violators match seeded: {found == expected} "
                          f"{check.stderr[-300:]}")  # fmt: skip
                    return 1
        if profile:
            env = {**_organization_env(stand_in, 8, processes), "DATABASE_URL": database_url}
            per_account = profile_check(env, before_each=stand_in.cold_report)
            accounts_audited = len({account for account, _, _ in findings_seen[8]})
            print("\n".join(per_account.lines(per=accounts_audited, unit="account")))
    one, eight = median(walls[1]), median(walls[8])
    ratio = one / eight
    same = findings_seen[1] == findings_seen[8]
    print(f"worst case, medians of {runs}: {one:.1f}s one at a time, {eight:.1f}s eight at a time")
    print(f"worst case, speed-up with 8 accounts at a time: {ratio:.1f}x (target >= 5x); same findings: {same}")
    ok = ratio >= 5 and same
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=50)
    parser.add_argument("--users", type=int, default=200)
    parser.add_argument("--console", type=int, default=140)
    parser.add_argument("--violators", type=int, default=20)
    parser.add_argument("--delay-ms", type=float, default=100.0)
    parser.add_argument("--worst-case", action="store_true", help="whole process, cold reports, closed connections")
    parser.add_argument("--runs", type=int, default=1, help="worst case: runs of each concurrency (medians)")
    parser.add_argument("--profile", action="store_true", help="worst case: the bot's CPU per account (cProfile)")
    parser.add_argument("--audit-processes", default="auto", help="worst case: AUDIT_PROCESSES of the check")
    args = parser.parse_args()
    os.environ.update(
        AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", AWS_SESSION_TOKEN="testing",
        AWS_DEFAULT_REGION=DEMO_REGION, AWS_EC2_METADATA_DISABLED="true",
    )  # fmt: skip
    with aws_stand_in(args.delay_ms, close_connections=args.worst_case) as stand_in:
        moto_url, proxy_url = stand_in.moto_url, stand_in.proxy_url
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
        if args.worst_case:
            return worst_case(stand_in, expected, args.runs, args.profile, args.audit_processes)

        base = Config(aws_endpoint_url=proxy_url, aws_organization=True, aws_role_name=ROLE)
        # Warm-up: every account's credential report is generated once, so both measured runs find
        # it ready (as on AWS, where a report stays fresh for four hours).
        service.run_audit(dataclasses.replace(base, aws_max_concurrency=8))
        runs = {}
        for concurrency in (1, 8):
            stand_in.stats(reset=True)
            cpu_aws, cpu_bot, wall = stand_in.cpu_seconds(), time.process_time(), time.perf_counter()
            result = service.run_audit(dataclasses.replace(base, aws_max_concurrency=concurrency))
            wall = time.perf_counter() - wall
            cpu_bot, cpu_aws = time.process_time() - cpu_bot, stand_in.cpu_seconds() - cpu_aws
            stats = stand_in.stats()
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


if __name__ == "__main__":
    sys.exit(main())
