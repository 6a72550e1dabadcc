"""`check --demo`: a local AWS (moto's server, in-process, over HTTP) seeded with two small accounts.

The audit then runs the very same code path as against AWS, through AWS_ENDPOINT_URL. moto is
wrapped in `AwsStandIn`, which adds what moto lacks and the audit relies on (the tests use it too).
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import logging
import os
import re
import threading
import urllib.parse
import zlib
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime, timedelta
from http import HTTPStatus
from typing import TYPE_CHECKING, Any

import boto3

from bot.standin_reads import FAST_LISTS, FAST_READS, list_answer
from bot.standin_reads import answer as fast_read

if TYPE_CHECKING:
    from bot.config import Config

DEMO_ACCOUNT_ALIAS = "acme-demo"
DEMO_CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing", "aws_session_token": "testing"}
DEMO_REGION = "us-east-1"

# (name, console password?, MFA kind or None, tags, password reset required?)
DEMO_USERS: list[tuple[str, bool, str | None, dict[str, str], bool]] = [
    ("alice", True, "virtual", {"email": "alice@example.com"}, False),
    ("bob", True, None, {"slack-user-id": "U0BOB0001"}, False),
    ("carol", True, "fido", {}, False),
    ("dave", True, "hardware", {}, False),
    ("erin", True, "unenabled-virtual", {"email": "erin@example.com"}, False),
    ("frank", False, None, {}, False),
    ("heidi", True, None, {"mfa-exempt": "break-glass account, password in the vault"}, False),
    ("ivan", True, None, {}, True),
    ("svc-deploy", False, None, {"team": "platform"}, False),
]
DEMO_VIOLATORS = {"bob", "erin", "ivan"}

# A second account, the way AWS now recommends member accounts: centralized root access (no root
# password, no root access keys), people on roles; one CI user with only an access key.
DEMO_SANDBOX_ID = "111122223333"
DEMO_SANDBOX_ALIAS = "acme-sandbox"
DEMO_ROLE = "MfaBotAudit"
DEMO_SANDBOX_KEY_ONLY = "sandbox-ci"  # a violation only with MFA_SCOPE=all


DEMO_INSTALL = "pip install -r requirements-demo.txt (or: pip install 'mfa-bot[demo]')"


def demo_missing() -> str | None:
    """One line saying how to install the demo's local IAM when moto's server is missing, else None."""
    try:
        import moto.server  # noqa: F401  (the demo extra, left out of the runtime install)
    except ImportError:
        return f"check --demo needs moto's server, which the runtime install leaves out: {DEMO_INSTALL}"
    return None


def demo_client(endpoint_url: str, service: str = "iam") -> Any:
    """A boto3 client for the local IAM with throwaway credentials."""
    return boto3.client(service, endpoint_url=endpoint_url, region_name=DEMO_REGION, **DEMO_CREDENTIALS)


def add_user(
    iam: Any,
    name: str,
    console: bool = True,
    mfa: str | None = None,
    tags: dict[str, str] | None = None,
    reset: bool = False,
    account_id: str = "123456789012",
) -> None:
    """Create one IAM user: a console password or not, and an MFA device of kind `mfa`.

    `mfa`: None, "virtual", "unenabled-virtual" (created, never enabled), "fido" or "hardware".
    """
    iam.create_user(UserName=name, Tags=[{"Key": k, "Value": v} for k, v in (tags or {}).items()])
    if console:
        iam.create_login_profile(UserName=name, Password="Demo-Password-1!", PasswordResetRequired=reset)
        if reset:  # moto keeps the flag only through UpdateLoginProfile
            iam.update_login_profile(UserName=name, Password="Demo-Password-1!", PasswordResetRequired=True)
    serial = None
    if mfa in ("virtual", "unenabled-virtual"):
        serial = iam.create_virtual_mfa_device(VirtualMFADeviceName=name)["VirtualMFADevice"]["SerialNumber"]
    elif mfa == "fido":
        serial = f"arn:aws:iam::{account_id}:u2f/user/{name}/yubikey-{name}"
    elif mfa == "hardware":
        serial = f"GAHT{zlib.crc32(name.encode()) % 10**8:08d}"
    if serial and mfa != "unenabled-virtual":
        iam.enable_mfa_device(
            UserName=name, SerialNumber=serial, AuthenticationCode1="123456", AuthenticationCode2="654321"
        )


def seed_demo_account(iam: Any) -> None:
    """Create the demo users, devices and tags (every edge case of the rule)."""
    iam.create_account_alias(AccountAlias=DEMO_ACCOUNT_ALIAS)
    account_id = demo_client(iam.meta.endpoint_url, "sts").get_caller_identity()["Account"]
    for name, console, mfa, tags, reset in DEMO_USERS:
        add_user(iam, name, console, mfa, tags, reset, account_id)


def set_root_credentials(endpoint_url: str, account_id: str, password: bool, access_keys: bool) -> None:
    """Tell the stand-in what GetAccountSummary says about root's password and access keys."""
    import urllib.request

    body = json.dumps({"account_id": account_id, "password_present": password, "access_keys_present": access_keys})
    request = urllib.request.Request(f"{endpoint_url}{STANDIN_ROOT_PATH}", data=body.encode(), method="POST")
    urllib.request.urlopen(request, timeout=10).close()


def seed_demo_sandbox(endpoint_url: str) -> None:
    """The second demo account: a root without credentials, one user with MFA, one with only an access key."""
    iam = role_client(endpoint_url, DEMO_SANDBOX_ID, DEMO_ROLE)
    iam.create_account_alias(AccountAlias=DEMO_SANDBOX_ALIAS)
    add_user(iam, "sandbox-admin", mfa="virtual", account_id=DEMO_SANDBOX_ID)
    add_user(iam, DEMO_SANDBOX_KEY_ONLY, console=False, account_id=DEMO_SANDBOX_ID)
    iam.create_access_key(UserName=DEMO_SANDBOX_KEY_ONLY)
    set_root_credentials(endpoint_url, DEMO_SANDBOX_ID, password=False, access_keys=False)
    set_root_credentials(endpoint_url, "123456789012", password=True, access_keys=False)


def demo_config(config: Config, endpoint_url: str) -> Config:
    """The configuration auditing both demo accounts at the local endpoint."""
    return dataclasses.replace(
        config,
        aws_endpoint_url=endpoint_url,
        aws_account_ids=("123456789012", DEMO_SANDBOX_ID),
        aws_role_name=DEMO_ROLE,
        aws_organization=False,
    )


def role_client(endpoint_url: str, account_id: str, role_name: str, service: str = "iam") -> Any:
    """A client acting in another account through an assumed role (moto lets any role be assumed)."""
    role_arn = f"arn:aws:iam::{account_id}:role/{role_name}"
    creds = demo_client(endpoint_url, "sts").assume_role(RoleArn=role_arn, RoleSessionName="seed")["Credentials"]
    return boto3.client(
        service,
        endpoint_url=endpoint_url,
        region_name=DEMO_REGION,
        aws_access_key_id=creds["AccessKeyId"],
        aws_secret_access_key=creds["SecretAccessKey"],
        aws_session_token=creds["SessionToken"],
    )


# -- the local AWS: moto plus what it lacks ------------------------------------------------------

STANDIN_ROOT_PATH = "/__standin__/root"
RECORDED_EVENTS = ("CreateLoginProfile", "DeactivateMFADevice", "DeleteVirtualMFADevice")
WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def moto_wsgi_app() -> WsgiApp:
    """moto's own WSGI dispatcher (every service), served in this process."""
    from moto import backends
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app

    # moto lists its own package folder (a few hundred isdir calls) on every request, under a
    # lock: a third of its CPU per call. The list never changes while it runs: list it once.
    modules = tuple(backends.list_of_moto_modules())
    backends.list_of_moto_modules = lambda: modules
    return DomainDispatcherApplication(create_backend_app)


def _account_of(headers: dict[str, str]) -> str:
    """The account a SigV4-signed request acts in (moto maps access keys, assumed roles' too, to accounts)."""
    from moto.iam.models import get_account_id_from

    key = (headers.get("HTTP_AUTHORIZATION") or "").partition("Credential=")[2].split("/", 1)[0]
    return get_account_id_from(key)


def _iam_backend(account: str) -> Any:
    """moto's IAM state of one account (IAM is global: one backend per account)."""
    from moto.iam.models import iam_backends

    return iam_backends[account]["global"]


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclasses.dataclass
class _Report:
    generated_at: datetime
    body: bytes | None = None  # moto's GetCredentialReport answer, dated generated_at


class AwsStandIn:
    """WSGI middleware over moto: what moto lacks and the audit relies on, the way AWS does it.

    - Credential reports: one is generated per account and then served unchanged, with its real
      GeneratedTime, until it is `report_max_age` old or moto forgot it (moto rebuilds it on every
      read and dates it 2015-02-02). So a change after the report is invisible in it, as in AWS.
    - CloudTrail `LookupEvents`: answered from the IAM changes that passed through
      (CreateLoginProfile, DeactivateMFADevice, DeleteVirtualMFADevice), per account, newest
      first, filtered by event name and time, paginated (MaxResults, NextToken).
    - `GetAccountSummary`: AccountPasswordPresent / AccountAccessKeysPresent for the accounts
      given a root state (POST /__standin__/root); moto never sends them.
    - GetLoginProfile, ListMFADevices and ListUserTags answered from moto's state directly, and
      ListUsers and ListVirtualMFADevices where moto would answer in one page (`bot.standin_reads`:
      moto's own answers, without its dispatch: 3 ms a read, 50 ms a list of 200).
    POST /moto-api/reset clears this state too.
    """

    def __init__(
        self,
        app: WsgiApp,
        report_max_age: timedelta = timedelta(hours=4),
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.app = app
        self.report_max_age = report_max_age
        self.clock = clock
        self.events: list[dict[str, Any]] = []
        self.reports: dict[str, _Report] = {}
        self.root: dict[str, tuple[bool, bool]] = {}
        self._lock = threading.Lock()

    def reset(self) -> None:
        with self._lock:
            self.events.clear()
            self.reports.clear()
            self.root.clear()

    def _call(self, environ: dict[str, Any], body: bytes) -> tuple[str, list[tuple[str, str]], bytes]:
        environ["wsgi.input"] = io.BytesIO(body)
        started: list[Any] = []
        data = b"".join(self.app(environ, lambda status, headers, exc_info=None: started.extend([status, headers])))
        return started[0], list(started[1]), data

    @staticmethod
    def _answer(start_response: Callable[..., Any], status: str, headers: list[tuple[str, str]], data: bytes):
        headers = [(k, v) for k, v in headers if k.lower() != "content-length"]
        start_response(status, [*headers, ("Content-Length", str(len(data)))])
        return [data]

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else b""
        path = environ.get("PATH_INFO", "")
        if path == STANDIN_ROOT_PATH:
            wanted = json.loads(body or b"{}")
            with self._lock:
                self.root[str(wanted["account_id"])] = (
                    bool(wanted["password_present"]),
                    bool(wanted["access_keys_present"]),
                )
            return self._answer(start_response, "200 OK", [("Content-Type", "application/json")], b"{}")
        if path == "/moto-api/reset":
            self.reset()
        target = environ.get("HTTP_X_AMZ_TARGET") or ""
        if target.endswith(".LookupEvents"):
            data = json.dumps(self._lookup(_account_of(environ), json.loads(body or b"{}"))).encode()
            return self._answer(start_response, "200 OK", [("Content-Type", "application/x-amz-json-1.1")], data)
        fields = {} if target else urllib.parse.parse_qs(body.decode("utf-8", "replace"))
        action = fields.get("Action", [""])[0]
        if action in FAST_READS:
            code, data = fast_read(_iam_backend(_account_of(environ)), action, fields.get("UserName", [""])[0])
            headers = [("Content-Type", "text/xml")]
            return self._answer(start_response, f"{code} {HTTPStatus(code).phrase}", headers, data)
        if action in FAST_LISTS:
            listed = list_answer(_iam_backend(_account_of(environ)), action, fields)
            if listed is not None:
                return self._answer(start_response, "200 OK", [("Content-Type", "text/xml")], listed[1])
        if action == "GetCredentialReport":
            cached = self._cached_report(_account_of(environ))
            if cached is not None:
                return self._answer(start_response, "200 OK", [("Content-Type", "text/xml")], cached)
        status, headers, data = self._call(environ, body)
        if status.startswith("200"):
            data = self._after(action, environ, body, data)
        return self._answer(start_response, status, headers, data)

    def _cached_report(self, account: str) -> bytes | None:
        with self._lock:
            report = self.reports.get(account)
            return report.body if report is not None else None

    def _after(self, action: str, environ: dict[str, Any], body: bytes, data: bytes) -> bytes:
        """Record, date or complete a successful IAM answer."""
        if action == "GenerateCredentialReport":
            account, now = _account_of(environ), self.clock()
            started = b"<State>STARTED</State>" in data  # moto had none (never made, or forgotten): a new one
            with self._lock:
                report = self.reports.get(account)
                if started or report is None or now - report.generated_at >= self.report_max_age:
                    self.reports[account] = _Report(generated_at=now)
        elif action == "GetCredentialReport":
            account = _account_of(environ)
            with self._lock:
                report = self.reports.setdefault(account, _Report(generated_at=self.clock()))
                stamp = f"<GeneratedTime>{_iso(report.generated_at)}</GeneratedTime>".encode()
                data = re.sub(rb"<GeneratedTime>[^<]*</GeneratedTime>", stamp, data)
                report.body = data
        elif action == "GetAccountSummary":
            with self._lock:
                root = self.root.get(_account_of(environ))
            if root is not None:
                entries = "".join(
                    f"<entry><key>{key}</key><value>{int(value)}</value></entry>"
                    for key, value in zip(("AccountPasswordPresent", "AccountAccessKeysPresent"), root)
                ).encode()
                data = data.replace(b"</SummaryMap>", entries + b"</SummaryMap>", 1)
        elif action in RECORDED_EVENTS:
            self._record(action, _account_of(environ), urllib.parse.parse_qs(body.decode("utf-8", "replace")))
        return data

    def _record(self, action: str, account: str, fields: dict[str, list[str]]) -> None:
        params = {}
        for field, key in (("UserName", "userName"), ("SerialNumber", "serialNumber")):
            if fields.get(field):
                params[key] = fields[field][0]
        now = self.clock()
        with self._lock:
            event_id = f"{len(self.events) + 1:08d}-0000-4000-8000-000000000000"
        detail = {
            "eventVersion": "1.08",
            "eventTime": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "eventSource": "iam.amazonaws.com",
            "eventName": action,
            "awsRegion": "us-east-1",
            "requestParameters": params,
            "responseElements": None,
            "eventID": event_id,
            "readOnly": False,
            "eventType": "AwsApiCall",
            "managementEvent": True,
            "recipientAccountId": account,
            "eventCategory": "Management",
        }
        user = params.get("userName")
        resources = [{"ResourceType": "AWS::IAM::User", "ResourceName": user}] if user else []
        event = {
            "EventId": event_id,
            "EventName": action,
            "ReadOnly": "false",
            "EventTime": now.timestamp(),
            "EventSource": "iam.amazonaws.com",
            "Username": "demo",
            "Resources": resources,
            "CloudTrailEvent": json.dumps(detail),
        }
        with self._lock:
            self.events.append({"account": account, "time": now, "event": event})

    def _lookup(self, account: str, request: dict[str, Any]) -> dict[str, Any]:
        names = {
            a["AttributeValue"] for a in request.get("LookupAttributes", ()) if a.get("AttributeKey") == "EventName"
        }
        start = datetime.fromtimestamp(float(request["StartTime"]), UTC) if "StartTime" in request else None
        end = datetime.fromtimestamp(float(request["EndTime"]), UTC) if "EndTime" in request else None
        with self._lock:
            matching = [
                e["event"]
                for e in reversed(self.events)
                if e["account"] == account
                and (not names or e["event"]["EventName"] in names)
                and (start is None or e["time"] >= start)
                and (end is None or e["time"] <= end)
            ]
        size = max(1, min(50, int(request.get("MaxResults") or 50)))
        offset = int(request.get("NextToken") or 0)
        page: dict[str, Any] = {"Events": matching[offset : offset + size]}
        if offset + size < len(matching):
            page["NextToken"] = str(offset + size)
        return page


@contextlib.contextmanager
def local_iam_server() -> Iterator[str]:
    """Run moto (wrapped in `AwsStandIn`) on a free loopback port for the duration; yields its endpoint URL."""
    from werkzeug.serving import make_server

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = make_server("127.0.0.1", 0, AwsStandIn(moto_wsgi_app()), threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="local-aws", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.port}"
    finally:
        server.shutdown()
        thread.join()


@contextlib.contextmanager
def demo_environment() -> Iterator[str]:
    """A seeded local IAM, with AWS_* pointed at it for this process; yields the endpoint URL."""
    saved = {
        k: os.environ.get(k)
        for k in (
            "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY",
            "AWS_SESSION_TOKEN",
            "AWS_DEFAULT_REGION",
            "AWS_ENDPOINT_URL",
            "AWS_PROFILE",
        )
    }
    with local_iam_server() as endpoint:
        os.environ.update(
            AWS_ACCESS_KEY_ID="testing",
            AWS_SECRET_ACCESS_KEY="testing",
            AWS_SESSION_TOKEN="testing",
            AWS_DEFAULT_REGION=DEMO_REGION,
            AWS_ENDPOINT_URL=endpoint,
        )
        os.environ.pop("AWS_PROFILE", None)
        try:
            seed_demo_account(demo_client(endpoint))
            seed_demo_sandbox(endpoint)
            yield endpoint
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
