"""The live wave's three IAM reads on a lean signed path: GetLoginProfile, ListMFADevices, ListUserTags.

A live wave makes up to three of these calls per user the report flags: most of an account's
calls. Through a botocore client each costs about 3.5 ms of CPU on the 2-core reference machine
(event hooks, endpoint rules, request objects, http.client's header parsing); with 8 accounts at
a time that CPU, not the network, is what the audit waits on. `LeanIamReads` sends the same
Query-protocol request, signed with SigV4 (hmac, hashlib), on one keep-alive http.client
connection per thread (TLS checked against botocore's CA bundle, the client's timeouts), and
parses the answer with botocore's own QueryParser and the operation's output shape: the same
dicts, the same ClientError, the same standard-mode retry decisions and backoff
(botocore.retries.standard), for about a third of the CPU.

It signs only with what botocore itself used on this client: the credential scope (region,
service) and access key are read off the Authorization header of the client's first request
(its `before-send` event), so they cannot differ from botocore's. Until then, and always when a
proxy applies to the endpoint, when the endpoint is neither http nor https, or when the client
signs in any other way, each call goes through the botocore client. Every other method is the
botocore client's.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import http.client
import re
import ssl
import threading
import time
import urllib.parse
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Literal

from botocore import exceptions as boto_errors
from botocore.httpsession import get_cert_path
from botocore.parsers import QueryParser
from botocore.retries import standard
from botocore.utils import get_environ_proxies

from bot.aws_clients import Session, parse_timestamp

LEAN_OPERATIONS = {
    "get_login_profile": "GetLoginProfile",
    "list_mfa_devices": "ListMFADevices",
    "list_user_tags": "ListUserTags",
}
CONTENT_TYPE = "application/x-www-form-urlencoded; charset=utf-8"
ALGORITHM = "AWS4-HMAC-SHA256"
_SCOPE = re.compile(r"^AWS4-HMAC-SHA256 Credential=([^/\s]+)/\d{8}/([^/\s]+)/([^/\s]+)/aws4_request,")

Credentials = tuple[str, str, str | None]  # access key id, secret access key, session token


def signing_host(url: str) -> str:
    """The Host header SigV4 signs for `url`: the host, with the port unless it is the scheme's default."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    if parts.port is not None and parts.port != {"http": 80, "https": 443}.get(parts.scheme):
        host = f"{host}:{parts.port}"
    return host


def sigv4_headers(
    url: str, body: bytes, credentials: Credentials, region: str, service: str, amz_date: str
) -> dict[str, str]:
    """The headers of a signed SigV4 POST of a form `body` to `url` (`amz_date`: YYYYMMDDTHHMMSSZ)."""
    access_key, secret_key, token = credentials
    headers = {"Content-Type": CONTENT_TYPE, "Host": signing_host(url), "X-Amz-Date": amz_date}
    if token:
        headers["X-Amz-Security-Token"] = token
    signed = sorted((name.lower(), " ".join(value.split())) for name, value in headers.items())
    signed_names = ";".join(name for name, _ in signed)
    path = urllib.parse.quote(urllib.parse.urlsplit(url).path or "/", safe="/~")
    canonical = "\n".join(
        ["POST", path, "", "".join(f"{name}:{value}\n" for name, value in signed), signed_names,
         hashlib.sha256(body).hexdigest()]
    )  # fmt: skip
    day = amz_date[:8]
    scope = f"{day}/{region}/{service}/aws4_request"
    to_sign = f"{ALGORITHM}\n{amz_date}\n{scope}\n{hashlib.sha256(canonical.encode()).hexdigest()}"
    key = hmac.digest(f"AWS4{secret_key}".encode(), day.encode(), "sha256")
    for part in (region, service, "aws4_request"):
        key = hmac.digest(key, part.encode(), "sha256")
    signature = hmac.new(key, to_sign.encode(), "sha256").hexdigest()
    headers["Authorization"] = (
        f"{ALGORITHM} Credential={access_key}/{scope}, SignedHeaders={signed_names}, Signature={signature}"
    )
    return headers


class _Answer:
    """What botocore's retry checks read of an HTTP response: its status and headers."""

    def __init__(self, status_code: int, headers: dict[str, str]) -> None:
        self.status_code, self.headers = status_code, headers


# A connection the server closed under us (a kept-alive one may have been dropped while idle).
_DROPPED = (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError)


class _Connections:
    """One keep-alive http.client connection per thread to one endpoint (a closed one is reopened).

    The same request botocore's urllib3 pool would carry, for less CPU: no pool, no per-request
    connection checks. A connection kept alive that the server closed meanwhile is
    retried once on a new one (the three reads change nothing); anything else fails the attempt.
    """

    def __init__(self, url: str, connect_timeout: float, read_timeout: float, ca_bundle: str) -> None:
        parts = urllib.parse.urlsplit(url)
        self.url, self._host, self._port = url, parts.hostname or "", parts.port
        self._path = parts.path or "/"
        self._context = _tls_context(ca_bundle) if parts.scheme == "https" else None
        self._connect_timeout, self._read_timeout = connect_timeout, read_timeout
        self._local = threading.local()

    def post(self, body: bytes, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        """(status, lower-cased headers, body) of one POST; a failure as botocore's exception for it."""
        conn: http.client.HTTPConnection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = self._new()
        kept_alive = conn.sock is not None
        for last_try in (not kept_alive, True):
            try:
                return self._exchange(conn, body, headers)
            except _DROPPED as exc:
                conn.close()
                if last_try:
                    raise boto_errors.ConnectionClosedError(endpoint_url=self.url, error=exc) from exc
        raise AssertionError("unreachable: the last try returns or raises")

    def _new(self) -> http.client.HTTPConnection:
        if self._context is not None:
            return http.client.HTTPSConnection(
                self._host, self._port, timeout=self._connect_timeout, context=self._context
            )
        return http.client.HTTPConnection(self._host, self._port, timeout=self._connect_timeout)

    def _exchange(
        self, conn: http.client.HTTPConnection, body: bytes, headers: dict[str, str]
    ) -> tuple[int, dict[str, str], bytes]:
        if conn.sock is None:
            try:
                conn.connect()  # TLS (hostname and chain checked) for https
            except ssl.SSLError as exc:
                conn.close()
                raise boto_errors.SSLError(endpoint_url=self.url, error=exc) from exc
            except TimeoutError as exc:
                conn.close()
                raise boto_errors.ConnectTimeoutError(endpoint_url=self.url, error=exc) from exc
            except OSError as exc:  # refused, unreachable, a name that does not resolve
                conn.close()
                raise boto_errors.EndpointConnectionError(endpoint_url=self.url, error=exc) from exc
            assert conn.sock is not None
            conn.sock.settimeout(self._read_timeout)
        try:
            conn.request("POST", self._path, body, headers)
            response = conn.getresponse()
            data = response.read()
        except _DROPPED:
            raise  # `post` decides: a new connection, or the error
        except TimeoutError as exc:
            conn.close()
            raise boto_errors.ReadTimeoutError(endpoint_url=self.url, error=exc) from exc
        except (http.client.HTTPException, OSError) as exc:
            conn.close()
            raise boto_errors.HTTPClientError(error=exc) from exc
        if response.will_close:
            conn.close()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, data


@functools.lru_cache(maxsize=8)
def _tls_context(ca_bundle: str) -> ssl.SSLContext:
    """A client TLS context that checks the chain (against `ca_bundle`) and the host name, once per bundle."""
    return ssl.create_default_context(cafile=ca_bundle)


class LeanIamReads:
    """A botocore IAM client whose GetLoginProfile, ListMFADevices and ListUserTags take the lean path.

    `credentials()` gives the (access key, secret, token) the client signs with; when its access
    key is not the one botocore signed with, the lean path stays off. `verify` is the client's
    certificate check: True (botocore's CA bundle) or a CA bundle's path (AWS_CA_BUNDLE).
    """

    def __init__(
        self,
        client: Any,
        credentials: Callable[[], Credentials],
        verify: Literal[True] | str = True,
        sleep: Callable[[float], None] = time.sleep,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._client, self._credentials, self._sleep, self._now = client, credentials, sleep, now
        meta = client.meta
        self._url: str = meta.endpoint_url
        config = meta.config
        scheme = urllib.parse.urlsplit(self._url).scheme
        self._usable = scheme in {"http", "https"} and not get_environ_proxies(self._url) and not config.proxies
        self._scope: tuple[str, str] | None = None  # (region, service) botocore signed with (set once)
        self._models = {op: meta.service_model.operation_model(op) for op in LEAN_OPERATIONS.values()}
        self._api_version: str = meta.service_model.api_version
        max_attempts = (config.retries or {}).get("total_max_attempts") or standard.DEFAULT_MAX_ATTEMPTS
        self._retry = standard.StandardRetryConditions(max_attempts=max_attempts)
        detector = standard.ThrottlingErrorDetector(standard.RetryEventAdapter())
        self._backoff = standard.ExponentialBackoff(service_name="iam", throttling_detector=detector)
        self._parser = QueryParser(timestamp_parser=parse_timestamp)
        self._connections = _Connections(self._url, config.connect_timeout, config.read_timeout, get_cert_path(verify))
        if self._usable:
            meta.events.register_first("before-send", self._hear_scope)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def get_login_profile(self, **params: Any) -> dict[str, Any]:
        """GetLoginProfile, as the botocore client answers it."""
        return self._call("get_login_profile", params)

    def list_mfa_devices(self, **params: Any) -> dict[str, Any]:
        """ListMFADevices (one page), as the botocore client answers it."""
        return self._call("list_mfa_devices", params)

    def list_user_tags(self, **params: Any) -> dict[str, Any]:
        """ListUserTags (one page), as the botocore client answers it."""
        return self._call("list_user_tags", params)

    @property
    def lean(self) -> bool:
        """Whether the three reads take the lean path now (botocore's scope heard, nothing against it)."""
        return self._usable and self._scope is not None

    def _hear_scope(self, request: Any, **_: Any) -> None:
        """`before-send`: the credential scope botocore signed this client's request with (never answers)."""
        if self._scope is not None:
            return
        authorization = request.headers.get("Authorization", b"")
        if isinstance(authorization, bytes):
            authorization = authorization.decode("ascii", "replace")
        match = _SCOPE.match(authorization)
        if match is None:
            return
        access_key, region, service = match.groups()
        if access_key == self._credentials()[0] and request.url.startswith(self._url.rstrip("/")):
            self._scope = (region, service)

    def _call(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        if not self.lean:
            result: dict[str, Any] = getattr(self._client, method)(**params)
            return result
        operation = LEAN_OPERATIONS[method]
        body = urllib.parse.urlencode(
            {"Action": operation, "Version": self._api_version, **{k: str(v) for k, v in params.items()}}
        ).encode()
        attempt = 1
        while True:
            parsed, answer, error = self._attempt(operation, body)
            context = standard.RetryContext(
                attempt_number=attempt, operation_model=self._models[operation],
                parsed_response=parsed, http_response=answer, caught_exception=error,
            )  # fmt: skip
            if not self._retry.is_retryable(context):
                break
            self._sleep(self._backoff.delay_amount(context))
            attempt += 1
        if error is not None:
            raise error
        assert parsed is not None and answer is not None
        parsed.setdefault("ResponseMetadata", {}).update(
            HTTPStatusCode=answer.status_code, HTTPHeaders=answer.headers, RetryAttempts=attempt - 1
        )
        if answer.status_code >= 300:
            error = parsed.get("Error", {})
            code = error.get("QueryErrorCode") or error.get("Code")
            raise self._client.exceptions.from_code(code)(parsed, operation)
        return parsed

    def _attempt(
        self, operation: str, body: bytes
    ) -> tuple[dict[str, Any] | None, _Answer | None, boto_errors.BotoCoreError | None]:
        assert self._scope is not None
        region, service = self._scope
        headers = sigv4_headers(
            self._url, body, self._credentials(), region, service, self._now().strftime("%Y%m%dT%H%M%SZ")
        )
        try:
            status, response_headers, data = self._connections.post(body, headers)
        except boto_errors.BotoCoreError as exc:
            return None, None, exc
        answer = _Answer(status, response_headers)
        model = self._models[operation]
        raw = {"status_code": answer.status_code, "headers": answer.headers, "body": data}
        parsed = self._parser.parse(raw, model.output_shape)
        code = parsed.get("Error", {}).get("Code") if answer.status_code >= 300 else None
        error_shape = model.service_model.shape_for_error_code(code) if code else None
        if error_shape is not None:  # the modeled error's own fields, as botocore's endpoint adds them
            parsed.update(self._parser.parse(raw, error_shape))
        return parsed, answer, None


def credentials_of(session: Session, credentials: dict[str, str] | None) -> Callable[[], Credentials] | None:
    """What LeanIamReads signs with: the assumed role's keys, or the session's own (refreshed as they expire).

    None when the session has none (then the botocore client stays the only path).
    """
    if credentials is not None:
        keys = (
            credentials["aws_access_key_id"], credentials["aws_secret_access_key"], credentials.get("aws_session_token")
        )  # fmt: skip
        return lambda: keys
    provider = session.get_credentials()
    if provider is None:
        return None

    def frozen() -> Credentials:
        current = provider.get_frozen_credentials()
        return current.access_key, current.secret_key, current.token

    return frozen


def lean_iam_reads(client: Any, session: Any, credentials: dict[str, str] | None) -> Any:
    """The IAM client for an audit: LeanIamReads over `client` for the bot's own `Session` (whose
    credentials and CA bundle it can read), else `client` itself."""
    if not isinstance(session, Session):
        return client
    provider = credentials_of(session, credentials)
    return client if provider is None else LeanIamReads(client, provider, session.ca_bundle or True)
