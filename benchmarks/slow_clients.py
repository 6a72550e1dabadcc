"""Benchmark: signed acks and /healthz while slow and huge requests hold the HTTP server (loopback only).

Starts `python -m bot serve` (HTTP mode, the Slack stand-in, an empty SQLite store), opens N
connections that send a request's headers and a few body bytes and then nothing, streams one
10 MB body (chunked) and declares another (Content-Length), and meanwhile sends signed
`/mfa-check help` requests and GET /healthz one after another. Prints the ack times (p50, max),
how the 10 MB bodies were answered, and how many slow connections stayed open. Exits 1 unless every
ack came back 200 in under a second. Bounded: N connections, R requests, each with a timeout.

    python -m benchmarks.slow_clients [--connections 200] [--requests 20] [--repo PATH]

`--repo` serves another checkout of the bot (e.g. an older commit, to compare serving stacks).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.bot_process import bot_env, serve_process
from tests.slack_standin import MEMBERS, SlackStandIn
from tests.slow_clients import SlowClients, ack_times, big_body, declared_big_body

SECRET = "benchmark-signing-secret"
BIG_BODY_BYTES = 10_000_000


def main(argv: Sequence[str] | None = None) -> int:
    """Run the load and print the numbers."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=200)
    parser.add_argument("--requests", type=int, default=20)
    parser.add_argument("--timeout", type=float, default=5.0, help="seconds one request may take")
    parser.add_argument("--repo", type=Path, default=None, help="serve this checkout instead")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="mfa-bot-slow-") as tmp, SlackStandIn(members=MEMBERS) as standin:
        workdir = Path(tmp)
        env = bot_env(
            workdir, standin, "http://127.0.0.1:9", f"sqlite:///{workdir / 'bot.db'}", SECRET, DIGEST_CRON="off",
            RECHECK_INTERVAL_MINUTES="0",
        )  # fmt: skip
        if args.repo is not None:
            env["PYTHONPATH"] = str(args.repo.resolve())
        with serve_process(workdir, env) as (url, _process, _log):
            quiet = ack_times(url, SECRET, lambda i: standin.response_url(f"quiet-{i}"), args.requests, args.timeout)
            with SlowClients(url, args.connections) as slow, ThreadPoolExecutor(2) as pool:
                streamed = pool.submit(big_body, url, BIG_BODY_BYTES)
                declared = pool.submit(declared_big_body, url, BIG_BODY_BYTES)
                loaded = ack_times(
                    url, SECRET, lambda i: standin.response_url(f"load-{i}"), args.requests, args.timeout
                )
                held = slow.still_open()
                big, told = streamed.result(timeout=120), declared.result(timeout=120)

    def line(name: str, results: list) -> bool:
        seconds = sorted(r.seconds for r in results)
        ok = sum(r.status == 200 for r in results)
        print(
            f"{name:<28} {ok}/{len(results)} answered 200; p50 {statistics.median(seconds) * 1000:.0f} ms, "
            f"max {seconds[-1] * 1000:.0f} ms"
        )
        return ok == len(results) and seconds[-1] < 1.0

    print(f"signed acks + GET /healthz, {args.requests} of each, one after another")
    line("no load", quiet)
    passed = line(f"{args.connections} slow connections", loaded)
    print(f"slow connections still open at the end: {held}/{args.connections}")
    print(f"10 MB body, streamed (chunked): HTTP {big.status or 'none'} after {big.seconds:.2f} s")
    print(f"10 MB body, declared (Content-Length): HTTP {told.status or 'none'} after {told.seconds:.2f} s")
    print("PASS: every ack under 1 s" if passed else "FAIL: some ack failed or took 1 s or more")
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
