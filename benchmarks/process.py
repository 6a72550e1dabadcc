"""Whole processes for the benchmarks: `python -m bot check --json` as a user runs it (wall time, CPU,
peak RSS), and the AWS stand-in (moto behind the delaying proxy) in a process of its own.

The stand-in runs apart so that it shares neither the bot's interpreter lock nor its memory: a
child's peak RSS (ru_maxrss) also counts what its parent held when it was forked, so the
benchmark process itself stays small.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class CheckRun:
    """One `check` process: exit code, wall seconds, CPU seconds, peak resident memory, its JSON."""

    exit_code: int
    wall: float
    cpu: float
    peak_rss_mb: float
    document: dict[str, Any] | None
    stderr: str

    def violators(self) -> set[str]:
        """The user names the process reported as violations."""
        if self.document is None:
            return set()
        return {u["user_name"] for a in self.document["accounts"] for u in a["users"] if u["status"] == "violation"}


def run_check(env: Mapping[str, str], args: tuple[str, ...] = ("check", "--json")) -> CheckRun:
    """Start `python -m bot check --json` with `env` (on top of this process's), wait for it, measure it.

    It runs in an empty directory (no `.env` read), with the project on PYTHONPATH.
    """
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), **env}
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err, tempfile.TemporaryDirectory() as cwd:
        started = time.perf_counter()
        process = subprocess.Popen([sys.executable, "-m", "bot", *args], cwd=cwd, env=full_env, stdout=out, stderr=err)
        _, status, usage = os.wait4(process.pid, 0)
        wall = time.perf_counter() - started
        process.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(), err.read().decode()
    try:
        document = json.loads(stdout) if stdout.strip() else None
    except ValueError:
        document = None
    return CheckRun(
        exit_code=process.returncode,
        wall=wall,
        cpu=usage.ru_utime + usage.ru_stime,
        peak_rss_mb=usage.ru_maxrss / 1024,  # kilobytes on Linux
        document=document,
        stderr=stderr,
    )


def median(values: list[float]) -> float:
    """The middle value (the mean of the two middle ones for an even count)."""
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def load_average() -> str:
    """The 1-, 5- and 15-minute load averages, to print beside timings on a shared machine."""
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


@dataclass(frozen=True)
class AwsStandIn:
    """moto in its own process: `moto_url` answers at once (seeding), `proxy_url` after the delay."""

    pid: int
    moto_url: str
    proxy_url: str

    def _post(self, path: str) -> dict[str, Any]:
        request = urllib.request.Request(f"{self.proxy_url}/__proxy__/{path}", method="POST")
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read())

    def stats(self, reset: bool = False) -> dict[str, Any]:
        """Calls per action and peaks in flight (since the last reset); `reset` clears them."""
        return self._post("reset" if reset else "stats")

    def cold_report(self) -> None:
        """Forget every account's credential report: the next audit finds none (GenerateCredentialReport
        answers STARTED), as on AWS more than four hours after the last one."""
        self._post("cold-report")

    def cpu_seconds(self) -> float:
        """utime + stime of the stand-in so far, from /proc (Linux)."""
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextmanager
def aws_stand_in(delay_ms: float, close_connections: bool = False) -> Iterator[AwsStandIn]:
    """Start `python -m tests.iam_proxy --delay-ms D` (moto and the proxy) and stop it on exit.

    `close_connections`: the proxy closes every connection, as moto's own server does.
    """
    closing = ["--close-connections"] if close_connections else []
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.iam_proxy", "--delay-ms", str(delay_ms), *closing],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        urls = dict(part.split("=", 1) for part in process.stdout.readline().split())
        yield AwsStandIn(process.pid, urls["moto"], urls["proxy"])
    finally:
        process.terminate()
        process.wait(timeout=10)
