"""Where a `python -m bot check` process spends its CPU: every thread profiled (cProfile, each
thread's own CPU clock), summed by what the time was for, and the slowest imports.

`profile_check(env)` runs `check --json` as its own process, the way benchmarks/scan.py and
benchmarks/accounts.py do, with a profiler installed in every thread, times what `check` imports
under `-X importtime`, and returns a `CpuProfile`. The profiler itself slows the process down (a
few times for Python-heavy code): read the shares, not the absolute milliseconds.
"""

from __future__ import annotations

import os
import pstats
import re
import subprocess
import sys
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# Runs in the child: a cProfile per thread on the thread's CPU clock, merged into one file at exit.
_BOOTSTRAP = """
import cProfile, pstats, sys, threading, time
profiles, lock = [], threading.Lock()
run = threading.Thread.run
def profiled_run(self):
    profile = cProfile.Profile(time.thread_time)
    profile.enable()
    try:
        run(self)
    finally:
        profile.disable()
        with lock:
            profiles.append(profile)
threading.Thread.run = profiled_run
main = cProfile.Profile(time.thread_time)
main.enable()
from bot.cli import main as cli_main
code = cli_main(sys.argv[2:])
main.disable()
stats = pstats.Stats(main)
for profile in profiles:
    stats.add(profile)
stats.dump_stats(sys.argv[1])
sys.exit(code)
"""

# (what the time was for, pstats key suffix of the function whose cumulative time counts)
CATEGORIES = (
    ("imports", ("<frozen importlib._bootstrap>", "_find_and_load")),
    ("client creation", ("botocore/session.py", "create_client")),
    ("AssumeRole", ("bot/aws_clients.py", "assume_role")),
    ("signing", ("botocore/signers.py", "sign")),
    ("response parsing", ("botocore/parsers.py", "parse")),
    ("request serialization", ("botocore/serialize.py", "serialize_to_request")),
    ("HTTP via botocore (send, receive, connect)", ("botocore/endpoint.py", "_send")),
    ("lean IAM reads, all in (sign, send, parse)", ("bot/iam_query.py", "_call")),
    ("HTTP via urllib3 (botocore's pool)", ("urllib3/connectionpool.py", "urlopen")),
    ("the audit (pure rule)", ("bot/audit.py", "judge_account")),
    ("credential report parsing", ("bot/audit.py", "parse_credential_report")),
    ("store: record the result", ("bot/service.py", "record_result")),
    ("output", ("bot/cli.py", "render")),
)


@dataclass(frozen=True)
class CpuProfile:
    """CPU seconds by category (cumulative, so nested categories overlap), the total, the imports."""

    total: float
    by_category: dict[str, float]
    slowest_imports: list[tuple[str, float]]  # (module, seconds including its own imports)
    api_calls: int

    def lines(self, per: int = 1, unit: str = "process") -> list[str]:
        """A printable table; `per` divides every figure (e.g. by the number of accounts)."""
        out = [f"CPU (profiled) per {unit}: {self.total / per * 1000:.0f} ms, {self.api_calls / per:.0f} AWS calls"]
        for name, seconds in sorted(self.by_category.items(), key=lambda item: -item[1]):
            out.append(f"  {name:32s} {seconds / per * 1000:7.1f} ms  {seconds / self.total * 100:4.1f}%")
        if per == 1:
            out.append("slowest imports (-X importtime, cumulative): " + ", ".join(
                f"{module} {seconds * 1000:.0f} ms" for module, seconds in self.slowest_imports))  # fmt: skip
        return out


def _cumulative(stats: pstats.Stats, file_suffix: str, function: str) -> float:
    raw = stats.stats  # type: ignore[attr-defined]  # {(file, line, name): (cc, nc, tt, ct, callers)}
    return sum(
        ct for (file, _, name), (_, _, _, ct, _) in raw.items() if file.endswith(file_suffix) and name == function
    )


def _api_calls(stats: pstats.Stats) -> int:
    raw = stats.stats  # type: ignore[attr-defined]
    return sum(
        nc
        for (file, _, name), (_, nc, _, _, _) in raw.items()
        if (file.endswith("botocore/client.py") and name == "_make_api_call")
        or (file.endswith("bot/iam_query.py") and name == "_attempt")
    )


_IMPORT_LINE = re.compile(r"import time:\s+\d+ \|\s+(\d+) \|( *)(\S+)")


def slowest_imports(importtime: str, top: int = 8) -> list[tuple[str, float]]:
    """The top-level imports (those the bot itself asked for) with the most cumulative time."""
    found = []
    for match in _IMPORT_LINE.finditer(importtime):
        cumulative, indent, module = int(match[1]), len(match[2]), match[3]
        if indent <= 3:  # the bot's own modules and what they import directly
            found.append((module, cumulative / 1e6))
    return sorted(found, key=lambda item: -item[1])[:top]


def profile_check(
    env: Mapping[str, str],
    args: tuple[str, ...] = ("check", "--json"),
    before_each: Callable[[], None] = lambda: None,
) -> CpuProfile:
    """Run `python -m bot check --json` (with `env` over this process's) profiled, and what it imports
    under `-X importtime`; its CpuProfile. `before_each` runs before the check (e.g. a cold report)."""
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), **env}
    with tempfile.TemporaryDirectory() as tmp:
        # What `check` imports, one after another (in `check` the store's imports run in a thread
        # beside the AWS reads, where -X importtime would count the waits for the GIL too).
        timed = subprocess.run(
            [sys.executable, "-X", "importtime", "-c", "import bot.cli, bot.service, bot.store"],
            cwd=tmp, env=full_env, capture_output=True, text=True, check=False,
        )  # fmt: skip
        out = Path(tmp) / "check.prof"
        before_each()
        done = subprocess.run(
            [sys.executable, "-c", _BOOTSTRAP, str(out), *args],
            cwd=tmp, env=full_env, capture_output=True, text=True, check=False,
        )  # fmt: skip
        if not out.exists():
            raise RuntimeError(f"profiled check failed: {done.stderr[-500:]}")
        stats = pstats.Stats(str(out))
    total = stats.total_tt  # type: ignore[attr-defined]
    by_category = {name: _cumulative(stats, *where) for name, where in CATEGORIES}
    return CpuProfile(total, by_category, slowest_imports(timed.stderr), _api_calls(stats))
