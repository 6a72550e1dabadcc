"""A small local HTTP proxy in front of moto's server: delays, counts and breaks AWS calls.

Used by the integration tests (fault injection) and by benchmarks/scan.py (a fixed delay per
call standing in for the network to AWS, and calls counted per action).
"""

from __future__ import annotations

import http.client
import json
import threading
import time
import urllib.parse
from collections import Counter
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "proxy-connection"}


@dataclass
class Fault:
    """Answer `action` with an AWS error `times` times (None: forever)."""

    code: str
    status: int = 400
    message: str = "injected by the test proxy"
    times: int | None = None
    when: str | None = None  # only requests whose body contains this text


def error_body(code: str, message: str, json_protocol: bool = False) -> bytes:
    """An AWS error document: JSON for JSON-protocol services (X-Amz-Target), else query XML."""
    if json_protocol:
        return json.dumps({"__type": code, "message": message}).encode()
    return (
        '<ErrorResponse xmlns="https://iam.amazonaws.com/doc/2010-05-08/">'
        f"<Error><Type>Sender</Type><Code>{code}</Code><Message>{message}</Message></Error>"
        "<RequestId>00000000-0000-0000-0000-000000000000</RequestId></ErrorResponse>"
    ).encode()


def action_of(body: bytes, headers: Any) -> str:
    """The AWS action a request asks for (query protocol form field, or X-Amz-Target)."""
    target = headers.get("X-Amz-Target")
    if target:
        return target.rsplit(".", 1)[-1]
    fields = urllib.parse.parse_qs(body.decode("utf-8", "replace"))
    return fields.get("Action", ["?"])[0]


def access_key_of(headers: Any) -> str:
    """The access key id a SigV4 request was signed with ('' when unsigned)."""
    auth = headers.get("Authorization") or ""
    _, _, rest = auth.partition("Credential=")
    return rest.split("/", 1)[0]


class IamProxy:
    """Forward to `upstream_url`, after `delay_seconds`, unless a fault is set for the action."""

    def __init__(self, upstream_url: str, delay_seconds: float = 0.0) -> None:
        parsed = urllib.parse.urlsplit(upstream_url)
        self.upstream = (parsed.hostname or "127.0.0.1", parsed.port or 80)
        self.delay_seconds = delay_seconds
        self.calls: Counter[str] = Counter()
        self.faults: dict[str, Fault] = {}
        self.in_flight = 0
        self.max_in_flight = 0
        self._keys_in_flight: Counter[str] = Counter()
        self.max_keys_in_flight = 0  # distinct credentials (= accounts, with assumed roles) at once
        self._lock = threading.Lock()
        self._local = threading.local()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="iam-proxy", daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def total_calls(self) -> int:
        return sum(self.calls.values())

    def fail(
        self, action: str, code: str, status: int = 400, times: int | None = None, when: str | None = None
    ) -> None:
        """Make `action` fail with `code` (for `times` calls, or forever; only bodies containing `when`)."""
        self.faults[action] = Fault(code=code, status=status, times=times, when=when)

    def reset_counts(self) -> None:
        with self._lock:
            self.calls.clear()
            self.max_in_flight = self.max_keys_in_flight = 0

    def __enter__(self) -> IamProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _take_fault(self, action: str, body: bytes) -> Fault | None:
        with self._lock:
            fault = self.faults.get(action)
            if fault is None or (fault.when is not None and fault.when not in urllib.parse.unquote_plus(body.decode())):
                return None
            if fault.times is not None:
                fault.times -= 1
                if fault.times <= 0:
                    del self.faults[action]
            return fault

    def _upstream(self) -> http.client.HTTPConnection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = http.client.HTTPConnection(*self.upstream, timeout=60)
            self._local.conn = conn
        return conn

    def _forward(self, method: str, path: str, body: bytes, headers: Any) -> tuple[int, list[tuple[str, str]], bytes]:
        send_headers = {k: v for k, v in headers.items() if k.lower() not in HOP_BY_HOP}
        for attempt in range(2):
            conn = self._upstream()
            try:
                conn.request(method, path, body=body, headers=send_headers)
                response = conn.getresponse()
                data = response.read()
                return response.status, response.getheaders(), data
            except (http.client.HTTPException, OSError):
                conn.close()
                self._local.conn = None
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body go in separate writes

            def log_message(self, *args: object) -> None:  # keep test output clean
                return

            def _reply(self, status: int, data: bytes, content_type: str = "application/json") -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                if self.path.startswith("/__proxy__/"):
                    if self.path == "/__proxy__/reset":
                        proxy.reset_counts()
                    stats = {"calls": dict(proxy.calls), "max_in_flight": proxy.max_in_flight,
                             "max_keys_in_flight": proxy.max_keys_in_flight}  # fmt: skip
                    self._reply(200, json.dumps(stats).encode())
                    return
                action = action_of(body, self.headers)
                key = access_key_of(self.headers)
                with proxy._lock:
                    proxy.calls[action] += 1
                    proxy.in_flight += 1
                    proxy.max_in_flight = max(proxy.max_in_flight, proxy.in_flight)
                    proxy._keys_in_flight[key] += 1
                    proxy.max_keys_in_flight = max(proxy.max_keys_in_flight, len(+proxy._keys_in_flight))
                try:
                    if proxy.delay_seconds:
                        time.sleep(proxy.delay_seconds)
                    fault = proxy._take_fault(action, body)
                    if fault is not None:
                        json_protocol = bool(self.headers.get("X-Amz-Target"))
                        content_type = "application/x-amz-json-1.1" if json_protocol else "text/xml"
                        status, headers = fault.status, [("Content-Type", content_type)]
                        data = error_body(fault.code, fault.message, json_protocol)
                    else:
                        status, headers, data = proxy._forward(self.command, self.path, body, self.headers)
                finally:
                    with proxy._lock:
                        proxy.in_flight -= 1
                        proxy._keys_in_flight[key] -= 1
                self.send_response(status)
                for key, value in headers:
                    if key.lower() not in HOP_BY_HOP | {"content-length", "server", "date"}:
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_POST = do_GET = _handle

        return Handler


def _serve_forever() -> None:
    """`python -m tests.iam_proxy --delay-ms 100`: moto's server and this proxy in their own process.

    Prints `moto=URL proxy=URL` on one line; GET /__proxy__/stats on the proxy returns its counts
    as JSON and POST /__proxy__/reset clears them. Benchmarks use it so that the AWS stand-in
    does not share the bot's interpreter (and its GIL).
    """
    import argparse
    import signal

    from moto import backends

    from bot.demo import local_iam_server

    # moto lists its own package folder (a few hundred isdir calls) on every request, under a
    # lock: a third of its CPU per call. The list never changes while it runs: list it once.
    modules = tuple(backends.list_of_moto_modules())
    backends.list_of_moto_modules = lambda: modules

    parser = argparse.ArgumentParser()
    parser.add_argument("--delay-ms", type=float, default=0.0)
    args = parser.parse_args()
    with local_iam_server() as moto_url, IamProxy(moto_url, delay_seconds=args.delay_ms / 1000) as proxy:
        print(f"moto={moto_url} proxy={proxy.url}", flush=True)
        signal.sigwait({signal.SIGTERM, signal.SIGINT})


if __name__ == "__main__":
    _serve_forever()
