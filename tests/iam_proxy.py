"""A small local HTTP proxy in front of moto: delays, counts and breaks AWS calls.

Used by the integration tests (fault injection) and by the benchmarks (a fixed delay per call
standing in for the network to AWS, and calls counted per action). It is a WSGI middleware
served by werkzeug's threaded server; behind it either moto's own server over HTTP (the tests)
or moto's WSGI dispatcher in the same process (`python -m tests.iam_proxy`, the benchmarks'
stand-in in its own process: one HTTP hop instead of two).
"""

from __future__ import annotations

import http.client
import io
import json
import sys
import threading
import time
import urllib.parse
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from bot.demo import AwsStandIn, moto_wsgi_app

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


# REST-JSON operations (no Action field, no X-Amz-Target) named by method and path.
REST_ACTIONS = {("POST", "/findings/import"): "BatchImportFindings", ("POST", "/findings"): "GetFindings"}


def action_of(body: bytes, headers: Any, method: str = "POST", path: str = "") -> str:
    """The AWS action a request asks for (query protocol form field, X-Amz-Target, or a REST path)."""
    target = headers.get("X-Amz-Target")
    if target:
        return target.rsplit(".", 1)[-1]
    if (method, path) in REST_ACTIONS:
        return REST_ACTIONS[method, path]
    fields = urllib.parse.parse_qs(body.decode("utf-8", "replace"))
    return fields.get("Action", ["?"])[0]


def access_key_of(headers: Any) -> str:
    """The access key id a SigV4 request was signed with ('' when unsigned)."""
    auth = headers.get("Authorization") or ""
    _, _, rest = auth.partition("Credential=")
    return rest.split("/", 1)[0]


WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def _request_headers(environ: dict[str, Any]) -> dict[str, str]:
    headers = {k[5:].replace("_", "-").title(): v for k, v in environ.items() if k.startswith("HTTP_")}
    for key in ("CONTENT_TYPE", "CONTENT_LENGTH"):
        if environ.get(key):
            headers[key.replace("_", "-").title()] = environ[key]
    return headers


def _wsgi_handler(app: WsgiApp, close_connections: bool = False) -> type[BaseHTTPRequestHandler]:
    """A keep-alive HTTP/1.1 handler calling a WSGI app (werkzeug's server closes every connection,
    which AWS does not: a new TCP connection per call would dominate a benchmark's CPU).
    `close_connections`: close each one anyway, like moto's own server (the worst case)."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # headers and body go in separate writes

        def log_message(self, *args: object) -> None:  # no line per request
            return

        def _handle(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            path, _, query = self.path.partition("?")
            environ: dict[str, Any] = {
                "REQUEST_METHOD": self.command, "PATH_INFO": path, "QUERY_STRING": query,
                "SERVER_NAME": "127.0.0.1", "SERVER_PORT": str(self.server.server_address[1]),
                "SERVER_PROTOCOL": self.request_version, "CONTENT_TYPE": self.headers.get("Content-Type", ""),
                "CONTENT_LENGTH": str(len(body)), "wsgi.input": io.BytesIO(body), "wsgi.errors": sys.stderr,
                "wsgi.url_scheme": "http", "wsgi.version": (1, 0), "wsgi.multithread": True,
                "wsgi.multiprocess": False, "wsgi.run_once": False, "REMOTE_ADDR": self.client_address[0],
            }  # fmt: skip
            for key, value in self.headers.items():
                name = "HTTP_" + key.upper().replace("-", "_")
                if name not in ("HTTP_CONTENT_TYPE", "HTTP_CONTENT_LENGTH"):
                    environ[name] = value
            started: list[Any] = []
            data = b"".join(app(environ, lambda status, headers, exc_info=None: started.extend([status, headers])))
            status, headers = started
            self.send_response(int(status.split(" ", 1)[0]), status.partition(" ")[2])
            for key, value in headers:
                if key.lower() not in HOP_BY_HOP | {"content-length", "server", "date"}:
                    self.send_header(key, value)
            self.send_header("Content-Length", str(len(data)))
            if close_connections:
                self.send_header("Connection", "close")
                self.close_connection = True
            self.end_headers()
            self.wfile.write(data)

        do_POST = do_GET = do_PUT = do_DELETE = _handle

    return Handler


class ForwardTo:
    """A WSGI app that forwards each request to an upstream HTTP server (one connection per thread)."""

    def __init__(self, upstream_url: str) -> None:
        parsed = urllib.parse.urlsplit(upstream_url)
        self.upstream = (parsed.hostname or "127.0.0.1", parsed.port or 80)
        self._local = threading.local()

    def _connection(self) -> http.client.HTTPConnection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = http.client.HTTPConnection(*self.upstream, timeout=60)
        return conn

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        body = environ["wsgi.input"].read()
        path = environ.get("PATH_INFO", "/") + (f"?{environ['QUERY_STRING']}" if environ.get("QUERY_STRING") else "")
        headers = {k: v for k, v in _request_headers(environ).items() if k.lower() not in HOP_BY_HOP}
        for attempt in range(2):
            conn = self._connection()
            try:
                conn.request(environ["REQUEST_METHOD"], path, body=body, headers=headers)
                response = conn.getresponse()
                data = response.read()
                break
            except (http.client.HTTPException, OSError):
                conn.close()
                self._local.conn = None
                if attempt:
                    raise
        skip = HOP_BY_HOP | {"content-length", "server", "date"}
        out = [(k, v) for k, v in response.getheaders() if k.lower() not in skip]
        start_response(f"{response.status} {response.reason}", [*out, ("Content-Length", str(len(data)))])
        return [data]


def forget_credential_reports() -> None:
    """Forget every account's credential report in this process's moto: the next
    GenerateCredentialReport answers STARTED (a cold report, as on AWS after four hours)."""
    from moto.iam.models import iam_backends

    for account_id in list(iam_backends):
        iam_backends[account_id]["global"].credential_report = None


class _Server(ThreadingHTTPServer):
    """http.server's threaded server with werkzeug's listen backlog (moto's own server: 128), not
    socketserver's 5: with many accounts at once connecting anew for each call, a backlog of 5
    overflows and each dropped SYN costs the caller a 1 s retransmission, which AWS never makes it wait."""

    request_queue_size = 128


class IamProxy:
    """Serve `upstream` (a URL, or a WSGI app) after `delay_seconds`, unless a fault is set for the action."""

    def __init__(self, upstream: str | WsgiApp, delay_seconds: float = 0.0, close_connections: bool = False) -> None:
        self.inner: WsgiApp = ForwardTo(upstream) if isinstance(upstream, str) else upstream
        self.delay_seconds = delay_seconds
        self.calls: Counter[str] = Counter()
        self.faults: dict[str, Fault] = {}
        self.in_flight = 0
        self.max_in_flight = 0
        self._keys_in_flight: Counter[str] = Counter()
        self.max_keys_in_flight = 0  # distinct credentials (= accounts, with assumed roles) at once
        self.timeline: list[tuple[float, float, str]] = []  # (arrived, answered, action), wall clock, since reset
        self._lock = threading.Lock()
        self._server = _Server(("127.0.0.1", 0), _wsgi_handler(self, close_connections))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="iam-proxy", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

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
            self.timeline.clear()
            self.max_in_flight = self.max_keys_in_flight = 0

    def stats(self) -> dict[str, Any]:
        return {
            "calls": dict(self.calls),
            "max_in_flight": self.max_in_flight,
            "max_keys_in_flight": self.max_keys_in_flight,
            "timeline": list(self.timeline),
        }

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

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else b""
        environ["wsgi.input"] = io.BytesIO(body)
        if environ.get("PATH_INFO", "").startswith("/__proxy__/"):
            if environ["PATH_INFO"] == "/__proxy__/reset":
                self.reset_counts()
            if environ["PATH_INFO"] == "/__proxy__/cold-report":
                forget_credential_reports()
            data = json.dumps(self.stats()).encode()
            start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(data)))])
            return [data]
        headers = _request_headers(environ)
        action = action_of(body, headers, environ.get("REQUEST_METHOD", ""), environ.get("PATH_INFO", ""))
        key = access_key_of(headers)
        arrived = time.time()
        with self._lock:
            self.calls[action] += 1
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            self._keys_in_flight[key] += 1
            self.max_keys_in_flight = max(self.max_keys_in_flight, len(+self._keys_in_flight))
        try:
            if self.delay_seconds:
                time.sleep(self.delay_seconds)
            fault = self._take_fault(action, body)
            if fault is None:
                return list(self.inner(environ, start_response))
            json_protocol = bool(headers.get("X-Amz-Target")) or action in REST_ACTIONS.values()
            data = error_body(fault.code, fault.message, json_protocol)
            content_type = "application/x-amz-json-1.1" if json_protocol else "text/xml"
            start_response(
                f"{fault.status} Injected", [("Content-Type", content_type), ("Content-Length", str(len(data)))]
            )
            return [data]
        finally:
            with self._lock:
                self.in_flight -= 1
                self._keys_in_flight[key] -= 1
                self.timeline.append((arrived, time.time(), action))


def skip_moto_backend_registration_scan() -> None:
    """Make moto's per-lookup bookkeeping O(1) in this process (the stand-in's CPU, not its answers).

    moto runs `BackendDict._create_account_specific_backend` on every backend lookup (each request,
    and each user's tags): under one global lock it lists the accounts and scans every registered
    BackendDict with a Python `__eq__`: a third of the stand-in's CPU at 50 accounts (py-spy).
    Once an account's backend exists, the call changes nothing: skip it then.
    """
    from moto.core.base_backend import BackendDict

    original = BackendDict._create_account_specific_backend
    if getattr(original, "skips_known_accounts", False):
        return

    def create_unless_known(self: Any, account_id: str) -> None:
        # An account enters a BackendDict only through `original`, which registers the dict, and
        # moto's reset empties every registered dict: an account present means nothing to do.
        if not dict.__contains__(self, account_id):
            original(self, account_id)

    create_unless_known.skips_known_accounts = True  # type: ignore[attr-defined]
    BackendDict._create_account_specific_backend = create_unless_known  # type: ignore[method-assign]


def _serve_forever() -> None:
    """`python -m tests.iam_proxy --delay-ms 100`: moto behind this proxy, in their own process.

    Prints `moto=URL proxy=URL` on one line (moto= is undelayed, for seeding); GET
    /__proxy__/stats returns the counts as JSON, POST /__proxy__/reset clears them and POST
    /__proxy__/cold-report forgets every credential report.
    Benchmarks use it so that the AWS stand-in does not share the bot's interpreter (its GIL).
    """
    import argparse
    import signal

    parser = argparse.ArgumentParser()
    parser.add_argument("--delay-ms", type=float, default=0.0)
    parser.add_argument("--close-connections", action="store_true", help="close each connection, as moto's server does")
    args = parser.parse_args()
    skip_moto_backend_registration_scan()
    moto = AwsStandIn(moto_wsgi_app())
    with (
        IamProxy(moto) as direct,
        IamProxy(moto, delay_seconds=args.delay_ms / 1000, close_connections=args.close_connections) as proxy,
    ):
        print(f"moto={direct.url} proxy={proxy.url}", flush=True)
        signal.sigwait({signal.SIGTERM, signal.SIGINT})


if __name__ == "__main__":
    _serve_forever()
