"""`python -m bot serve` as a real process (uvicorn, HTTP mode) for end-to-end tests."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar
from zoneinfo import ZoneInfo

from tests.fixtures_aws import FAKE_AWS_ENV
from tests.slack_standin import ADMIN, SlackStandIn, get

REPO = Path(__file__).resolve().parents[1]
T = TypeVar("T")


def wait_until(condition: Callable[[], T], timeout: float, what: str) -> T:
    """Poll `condition()` (e.g. a store read) until it is truthy; returns its value, fails after `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.05)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def due_now() -> tuple[str, str]:
    """(DIGEST_CRON, DIGEST_TIMEZONE) for this minute, in a zone where it is not about to be midnight."""
    zone = "UTC" if 1 <= datetime.now(UTC).hour <= 22 else "Etc/GMT+6"
    local = datetime.now(ZoneInfo(zone))
    return f"{local.minute} {local.hour} * * *", zone


def wait_healthy(url: str, process: subprocess.Popen, timeout: float = 30.0) -> None:
    """Until GET /healthz answers 200; fails at once if the bot exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"the bot exited with {process.returncode}")
        try:
            if get(url, "/healthz", timeout=1).status == 200:
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise AssertionError("the bot did not become healthy")


def bot_env(
    workdir: Path, standin: SlackStandIn, aws_endpoint_url: str, database_url: str, signing_secret: str, **extra: str
) -> dict[str, str]:
    """The environment of a bot process: throwaway AWS credentials, the stand-in, one admin."""
    return {
        "PATH": os.environ.get("PATH", ""),
        "PYTHONPATH": str(REPO),
        "HOME": str(workdir),
        **FAKE_AWS_ENV,
        "AWS_CONFIG_FILE": "/dev/null",
        "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
        "AWS_ENDPOINT_URL": aws_endpoint_url,
        "SLACK_BOT_TOKEN": "xoxb-test-token",
        "SLACK_SIGNING_SECRET": signing_secret,
        "SLACK_API_URL": standin.api_url,
        "ADMIN_USER_IDS": ADMIN,
        "EMAIL_DOMAIN": "example.com",
        "DATABASE_URL": database_url,
        **extra,
    }


PORT_TAKEN = "address already in use"  # another test (xdist worker) bound the free port first


def _start(workdir: Path, env: dict[str, str], log_path: Path) -> tuple[str, subprocess.Popen]:
    """`python -m bot serve` on a free port, healthy; a port taken meanwhile is retried on another."""
    for attempt in range(3):
        port = free_port()
        with log_path.open("w") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "bot", "serve"],
                cwd=workdir,
                env={**env, "PORT": str(port)},
                stdout=log,
                stderr=subprocess.STDOUT,
                text=True,
            )
        url = f"http://127.0.0.1:{port}"
        try:
            wait_healthy(url, process)
            return url, process
        except AssertionError:
            _stop(process)
            if attempt == 2 or PORT_TAKEN not in log_path.read_text(errors="replace").lower():
                raise
    raise AssertionError("unreachable")


def _stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


@contextmanager
def serve_process(workdir: Path, env: dict[str, str]) -> Iterator[tuple[str, subprocess.Popen, Path]]:
    """Start `python -m bot serve` on a free port; yields (URL, process, log path) once healthy."""
    workdir.mkdir(parents=True, exist_ok=True)
    log_path = workdir / "bot.log"
    url, process = _start(workdir, env, log_path)
    try:
        yield url, process, log_path
    finally:
        _stop(process)
