"""Hostile clients for load tests of `python -m bot serve` (loopback only, bounded in count and time).

`SlowClients(url, n)` opens n connections that send a request's headers and a few body bytes,
then nothing (they hold whatever the server gives them); `big_body(url, size)` streams a body of
`size` bytes (chunked, so no Content-Length can refuse it up front) and returns the status and how
long the server took to answer; `declared_big_body` declares it in Content-Length instead.
`ack_times(...)` sends signed slash commands one after another and returns each ack's status and time.
"""

from __future__ import annotations

import socket
import time
import urllib.parse
from collections.abc import Callable
from types import TracebackType

from tests.slack_standin import HttpResult, command_body, get, post, sign

CONNECT_TIMEOUT = 5.0


def _address(url: str) -> tuple[str, int]:
    parsed = urllib.parse.urlsplit(url)
    return parsed.hostname or "127.0.0.1", parsed.port or 80


class SlowClients:
    """n connections that stop half-way through a request body (a slowloris), closed on exit."""

    def __init__(self, url: str, count: int) -> None:
        self.address = _address(url)
        self.count = count
        self.sockets: list[socket.socket] = []

    def __enter__(self) -> SlowClients:
        head = (
            b"POST /slack/events HTTP/1.1\r\nHost: bot\r\nContent-Type: application/x-www-form-urlencoded\r\n"
            b"Content-Length: 4000\r\n\r\ntoken=slow"
        )
        for _ in range(self.count):
            conn = socket.create_connection(self.address, timeout=CONNECT_TIMEOUT)
            conn.sendall(head)
            self.sockets.append(conn)
        return self

    def still_open(self) -> int:
        """How many connections are still waiting: not answered and not closed (nothing to read yet)."""
        waiting = 0
        for conn in self.sockets:
            conn.setblocking(False)
            try:
                conn.recv(1, socket.MSG_PEEK)  # an answer, or b"" when closed
            except BlockingIOError:
                waiting += 1
            except OSError:
                pass
            finally:
                conn.setblocking(True)
        return waiting

    def statuses(self) -> list[int]:
        """The HTTP status each connection was answered with (0: closed without one)."""
        return [status_of(conn) for conn in self.sockets]

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        for conn in self.sockets:
            conn.close()


def status_of(conn: socket.socket) -> int:
    """The status code of the HTTP answer read from `conn` (0: closed without one)."""
    data = b""
    while b"\r\n" not in data:
        chunk = conn.recv(4096)
        if not chunk:
            return 0
        data += chunk
    return int(data.split(b" ", 2)[1])


def big_body(url: str, size: int, piece: int = 64 * 1024, timeout: float = 30.0) -> HttpResult:
    """POST `size` bytes chunked; returns the status (0: no answer) and seconds until the answer."""
    conn = socket.create_connection(_address(url), timeout=timeout)
    started = time.perf_counter()
    try:
        conn.sendall(
            b"POST /slack/events HTTP/1.1\r\nHost: bot\r\nContent-Type: application/x-www-form-urlencoded\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n"
        )
        sent = 0
        try:
            while sent < size:
                conn.sendall(b"%x\r\n%s\r\n" % (piece, b"a" * piece))
                sent += piece
            conn.sendall(b"0\r\n\r\n")
        except OSError:  # the server answered and closed before the body ended: what we want
            pass
        try:
            status = status_of(conn)
        except OSError:
            status = 0
        return HttpResult(status, b"", time.perf_counter() - started)
    finally:
        conn.close()


def declared_big_body(url: str, size: int, timeout: float = 30.0) -> HttpResult:
    """Declare `size` bytes in Content-Length, send the headers only; returns the status and seconds."""
    conn = socket.create_connection(_address(url), timeout=timeout)
    started = time.perf_counter()
    try:
        conn.sendall(
            b"POST /slack/events HTTP/1.1\r\nHost: bot\r\nContent-Type: application/x-www-form-urlencoded\r\n"
            b"Content-Length: %d\r\n\r\ntoken=" % size
        )
        try:
            status = status_of(conn)
        except OSError:
            status = 0
        return HttpResult(status, b"", time.perf_counter() - started)
    finally:
        conn.close()


def ack_times(
    url: str, secret: str, response_url: Callable[[int], str], count: int, timeout: float = 5.0
) -> list[HttpResult]:
    """`count` signed `/mfa-check help` requests in sequence, plus a GET /healthz after each."""
    results = []
    for i in range(count):
        body = command_body("help", "U0NOBODY01", response_url(i))
        try:
            results.append(post(url, "/slack/events", body, sign(body, secret), timeout=timeout))
        except OSError:
            results.append(HttpResult(0, b"", timeout))
        try:
            results.append(get(url, "/healthz", timeout=timeout))
        except OSError:
            results.append(HttpResult(0, b"", timeout))
    return results
