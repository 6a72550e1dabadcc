"""The live wave's lean IAM reads (bot/iam_query.py) answer exactly as the botocore client does.

Signatures are compared with botocore's own SigV4 signer; answers with botocore's through moto's
server over HTTP (errors included); retries, transport failures and hostile answers against a
small local HTTP server; and the cases where the lean path must stay off.
"""

from __future__ import annotations

import contextlib
import ssl
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config as BotoConfig
from botocore.credentials import Credentials
from botocore.exceptions import BotoCoreError, ClientError, EndpointConnectionError, ReadTimeoutError, SSLError
from botocore.parsers import ResponseParserError

from bot.aws_clients import Session, service_client
from bot.aws_reads import describe_error, user_tags
from bot.iam_query import CONTENT_TYPE, LeanIamReads, lean_iam_reads, sigv4_headers
from tests.fixtures_aws import seed_users

USERS = {
    "alice": {"console": True, "mfa": "virtual", "tags": {"email": "alice@example.com", "team": 'a&b <c> "d"'}},
    "dave": {"console": True, "mfa": "hardware"},
    "carol": {"console": True, "mfa": "fido", "tags": {"k<&>": 'v&"<x>', "ünï": "cödé"}},
    "ivan": {"console": True, "reset": True},
    "frank": {"console": False},
    "a+b=c,d.e@f_g-h": {"console": True, "tags": {"mfa-exempt": "break-glass", "slack-user-id": "U123"}},
}
OPERATIONS = ("get_login_profile", "list_mfa_devices", "list_user_tags")


@pytest.mark.parametrize(
    ("url", "token"),
    [
        ("http://127.0.0.1:5000", "session-token"),
        ("https://iam.amazonaws.com", None),
        ("https://iam.amazonaws.com:443/", "t"),
        ("https://iam.example.test:8443/some/path", "token with  spaces"),
        ("http://[::1]:4566", None),
    ],
)
def test_the_signature_is_botocores(url: str, token: str | None):
    body = b"Action=ListUserTags&Version=2010-05-08&UserName=a%2Bb%3Dc"
    request = AWSRequest(method="POST", url=url, data=body, headers={"Content-Type": CONTENT_TYPE})
    SigV4Auth(Credentials("AKIDEXAMPLE", "secret/key+x", token), "iam", "us-east-1").add_auth(request)
    amz_date = request.headers["X-Amz-Date"]
    ours = sigv4_headers(url, body, ("AKIDEXAMPLE", "secret/key+x", token), "us-east-1", "iam", amz_date)
    assert ours["Authorization"] == request.headers["Authorization"]
    assert ours.get("X-Amz-Security-Token") == request.headers.get("X-Amz-Security-Token")


def test_a_different_key_region_or_body_changes_the_signature():
    args = ("http://127.0.0.1:5000", b"Action=GetLoginProfile", ("AKID", "secret", None), "us-east-1", "iam")
    base = sigv4_headers(*args, "20261202T120000Z")["Authorization"]
    assert (
        sigv4_headers(args[0], args[1], ("AKID", "secret2", None), *args[3:], "20261202T120000Z")["Authorization"]
        != base
    )
    assert sigv4_headers(*args[:3], "eu-west-1", "iam", "20261202T120000Z")["Authorization"] != base
    assert sigv4_headers(args[0], b"Action=GetLoginProfilf", *args[2:], "20261202T120000Z")["Authorization"] != base


@pytest.fixture
def seeded(moto_url: str, aws_env: dict[str, str]) -> str:
    return seed_users(moto_url, USERS)


def _lean(url: str) -> tuple[Any, Any]:
    session = Session()
    client = service_client(session, "iam", url, 4)
    reads = lean_iam_reads(client, session, None)
    assert isinstance(reads, LeanIamReads)
    assert not reads.lean  # nothing heard from botocore yet
    reads.list_account_aliases()  # botocore's call: its credential scope is heard
    assert reads.lean
    return client, reads


def _outcome(client: Any, op: str, name: str) -> Any:
    try:
        answer = getattr(client, op)(UserName=name)
    except ClientError as exc:
        response = dict(exc.response)
        metadata = dict(response.pop("ResponseMetadata"))
        return type(exc).__name__, str(exc), response, metadata["HTTPStatusCode"]
    metadata = answer.pop("ResponseMetadata")
    return answer, metadata["HTTPStatusCode"], metadata["RetryAttempts"]


def test_every_answer_is_the_botocore_clients(seeded: str):
    client, reads = _lean(seeded)
    calls = [(op, name) for name in [*USERS, "nobody"] for op in OPERATIONS]
    differ = {}
    for op, name in calls:
        expected = _outcome(client, op, name)
        got = _outcome(reads, op, name)
        if got != expected:
            differ[(op, name)] = (expected, got)
    assert differ == {}
    outcomes = [_outcome(reads, "get_login_profile", name) for name in ("alice", "frank")]
    assert outcomes[0][1] == 200 and outcomes[1][-1] == 404  # answers and NoSuchEntity errors both compared
    with pytest.raises(client.exceptions.NoSuchEntityException):  # the modeled class, as botocore raises
        reads.list_mfa_devices(UserName="nobody")


def test_other_methods_are_the_botocore_clients(seeded: str):
    client, reads = _lean(seeded)
    assert reads.meta is client.meta
    assert {u["UserName"] for u in reads.list_users()["Users"]} == set(USERS)


class _Scripted(BaseHTTPRequestHandler):
    """Answers POSTs from the server's script, one (status, body) per request; records each request."""

    def log_message(self, *args: object) -> None:
        pass

    def do_POST(self) -> None:
        server: Any = self.server
        length = int(self.headers.get("Content-Length", 0))
        server.requests.append((dict(self.headers), self.rfile.read(length)))
        server.peers.append(self.client_address)
        if server.delay:
            time.sleep(server.delay)
        status, body = server.script.pop(0) if server.script else server.default
        self.send_response(status)
        self.send_header("Content-Type", "text/xml")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        if server.drop_after_answer:  # gone without a word, as an idle keep-alive connection can be
            self.close_connection = True


OK_TAGS = (
    200,
    b'<ListUserTagsResponse xmlns="https://iam.amazonaws.com/doc/2010-05-08/"><ListUserTagsResult>'
    b"<IsTruncated>false</IsTruncated><Tags><member><Key>k</Key><Value>v</Value></member></Tags>"
    b"</ListUserTagsResult><ResponseMetadata><RequestId>r1</RequestId></ResponseMetadata></ListUserTagsResponse>",
)


def _error(status: int, code: str) -> tuple[int, bytes]:
    return status, (
        f'<ErrorResponse xmlns="https://iam.amazonaws.com/doc/2010-05-08/"><Error><Type>Sender</Type>'
        f"<Code>{code}</Code><Message>{code} happened</Message></Error><RequestId>r2</RequestId></ErrorResponse>"
    ).encode()


def _serve(handler: type[BaseHTTPRequestHandler], wrap: Any = None) -> Any:
    server: Any = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    if wrap is not None:
        server.socket = wrap(server.socket)
    server.script, server.requests, server.peers, server.default = [], [], [], OK_TAGS
    server.delay, server.drop_after_answer = 0.0, False
    server.handle_error = lambda request, client_address: None  # a client that gave up (timeout tests): no trace
    return server


class _KeepAlive(_Scripted):
    protocol_version = "HTTP/1.1"


@pytest.fixture
def scripted() -> Iterator[Any]:
    server = _serve(_Scripted)
    yield from _running(server)


def _running(server: Any) -> Iterator[Any]:
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def keep_alive() -> Iterator[Any]:
    yield from _running(_serve(_KeepAlive))


def _reads_on(
    server: Any, sleeps: list[float], scheme: str = "http", verify: Any = True, **config: Any
) -> LeanIamReads:
    session = Session(aws_access_key_id="AKIDTEST", aws_secret_access_key="secret", region_name="us-east-1")
    client = session.client(
        "iam", endpoint_url=f"{scheme}://localhost:{server.server_port}", verify=verify, config=BotoConfig(**config)
    )
    reads = LeanIamReads(client, lambda: ("AKIDTEST", "secret", None), verify=verify, sleep=sleeps.append)
    server.script.append(OK_TAGS)
    client.list_user_tags(UserName="x")  # through botocore: the scope is heard
    assert reads.lean
    server.requests.clear()
    return reads


def _tags_page(key: str, marker: str | None) -> tuple[int, bytes]:
    more = f"<IsTruncated>true</IsTruncated><Marker>{marker}</Marker>" if marker else "<IsTruncated>false</IsTruncated>"
    return 200, (
        '<ListUserTagsResponse xmlns="https://iam.amazonaws.com/doc/2010-05-08/"><ListUserTagsResult>'
        f"{more}<Tags><member><Key>{key}</Key><Value>v</Value></member></Tags></ListUserTagsResult>"
        "<ResponseMetadata><RequestId>r</RequestId></ResponseMetadata></ListUserTagsResponse>"
    ).encode()


def test_pages_follow_the_marker(scripted: Any):
    reads = _reads_on(scripted, [])
    scripted.script.extend([_tags_page("first", "m+1/="), _tags_page("second", None)])
    assert user_tags(reads, "a+b") == {"first": "v", "second": "v"}
    assert [body for _, body in scripted.requests] == [
        b"Action=ListUserTags&Version=2010-05-08&UserName=a%2Bb",
        b"Action=ListUserTags&Version=2010-05-08&UserName=a%2Bb&Marker=m%2B1%2F%3D",
    ]


def test_throttling_and_server_errors_are_retried_as_botocore_does(scripted: Any):
    sleeps: list[float] = []
    reads = _reads_on(scripted, sleeps)
    scripted.script.extend([_error(400, "Throttling"), _error(503, "ServiceUnavailable"), OK_TAGS])
    answer = reads.list_user_tags(UserName="x")
    assert answer["Tags"] == [{"Key": "k", "Value": "v"}]
    assert answer["ResponseMetadata"]["RetryAttempts"] == 2
    assert len(scripted.requests) == 3 and len(sleeps) == 2
    headers, body = scripted.requests[0]
    assert body == b"Action=ListUserTags&Version=2010-05-08&UserName=x"
    assert headers["Authorization"].startswith("AWS4-HMAC-SHA256 Credential=AKIDTEST/")
    assert "/us-east-1/iam/aws4_request" in headers["Authorization"]


def test_throttling_that_does_not_end_is_an_error_after_three_attempts(scripted: Any):
    sleeps: list[float] = []
    reads = _reads_on(scripted, sleeps)
    scripted.default = _error(400, "Throttling")
    with pytest.raises(ClientError) as caught:
        reads.get_login_profile(UserName="x")
    assert caught.value.response["Error"]["Code"] == "Throttling"
    assert len(scripted.requests) == 3 and len(sleeps) == 2


def test_access_denied_is_not_retried(scripted: Any):
    reads = _reads_on(scripted, [])
    scripted.script.append(_error(403, "AccessDenied"))
    with pytest.raises(ClientError) as caught:
        reads.list_mfa_devices(UserName="x")
    assert caught.value.response["Error"]["Code"] == "AccessDenied"
    assert caught.value.operation_name == "ListMFADevices"
    assert len(scripted.requests) == 1


@pytest.mark.parametrize(
    "answer",
    [
        (200, b"<html>not IAM</html"),
        (200, b"\x00\xff garbage"),
        (500, b"<ErrorResponse><Error><Code>InternalFailure"),
    ],
)
def test_a_broken_answer_is_an_error_never_an_empty_result(scripted: Any, answer: tuple[int, bytes]):
    reads = _reads_on(scripted, [])
    scripted.default = answer
    with pytest.raises((BotoCoreError, ClientError, ResponseParserError)) as caught:  # as botocore raises
        reads.list_mfa_devices(UserName="x")
    assert describe_error(caught.value).count("\n") == 0 and "garbage" not in describe_error(caught.value)


def test_an_unreachable_endpoint_raises_botocores_connection_error(scripted: Any):
    sleeps: list[float] = []
    reads = _reads_on(scripted, sleeps)
    scripted.shutdown()
    scripted.server_close()
    with pytest.raises(EndpointConnectionError):
        reads.list_user_tags(UserName="x")
    assert len(sleeps) == 2  # retried as a transient failure first


def test_no_lean_path_through_a_proxy(scripted: Any, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    session = Session(aws_access_key_id="AKIDTEST", aws_secret_access_key="secret", region_name="us-east-1")
    client = session.client("iam", endpoint_url=f"http://127.0.0.1:{scripted.server_port}")
    reads = LeanIamReads(client, lambda: ("AKIDTEST", "secret", None))
    reads._hear_scope(AWSRequest("POST", f"http://127.0.0.1:{scripted.server_port}/"))
    assert not reads.lean


def test_no_lean_path_when_botocore_signed_with_other_keys(scripted: Any):
    session = Session(aws_access_key_id="AKIDTEST", aws_secret_access_key="secret", region_name="us-east-1")
    client = session.client("iam", endpoint_url=f"http://127.0.0.1:{scripted.server_port}")
    reads = LeanIamReads(client, lambda: ("AKIDOTHER", "secret", None))
    scripted.script.append(OK_TAGS)
    client.list_user_tags(UserName="x")
    assert not reads.lean
    scripted.script.append(OK_TAGS)
    assert reads.list_user_tags(UserName="x")["Tags"] == [{"Key": "k", "Value": "v"}]  # botocore's path
    assert "AKIDTEST/" in scripted.requests[-1][0]["Authorization"]


def test_sessions_not_the_bots_keep_the_botocore_client():
    import boto3

    client = boto3.Session(aws_access_key_id="a", aws_secret_access_key="b", region_name="us-east-1").client("iam")
    assert lean_iam_reads(client, object(), None) is client


def test_a_kept_alive_connection_is_reused_and_one_the_server_dropped_is_replaced(keep_alive: Any):
    reads = _reads_on(keep_alive, [])
    for _ in range(3):
        assert reads.list_user_tags(UserName="x")["Tags"] == [{"Key": "k", "Value": "v"}]
    assert len(set(keep_alive.peers[-3:])) == 1  # one connection for the three
    keep_alive.drop_after_answer = True
    reads.list_user_tags(UserName="x")  # answered, then the server drops the connection silently
    keep_alive.drop_after_answer = False
    answer = reads.list_user_tags(UserName="x")  # the dead connection fails; a new one answers
    assert answer["ResponseMetadata"]["RetryAttempts"] == 0
    assert keep_alive.peers[-1] != keep_alive.peers[-2]


def test_a_slow_answer_is_a_read_timeout(scripted: Any):
    sleeps: list[float] = []
    reads = _reads_on(scripted, sleeps, read_timeout=0.2)
    scripted.delay = 0.5
    with pytest.raises(ReadTimeoutError):
        reads.get_login_profile(UserName="x")
    assert len(sleeps) == 2  # transient: retried, as botocore does


def _certificate(tmp_path: Any, host: str) -> tuple[str, str]:
    """A self-signed certificate for `host` (and its key), as PEM files."""
    import datetime as dt

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(host)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    cert_file, key_file = tmp_path / f"{host}.pem", tmp_path / f"{host}.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return str(cert_file), str(key_file)


@contextlib.contextmanager
def _tls_server(tmp_path: Any, host: str) -> Iterator[tuple[Any, str]]:
    """A scripted server on TLS with a self-signed certificate for `host`: (server, the certificate's file)."""
    cert, key = _certificate(tmp_path, host)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    running = _running(_serve(_Scripted, lambda sock: context.wrap_socket(sock, server_side=True)))
    server = next(running)
    try:
        yield server, cert
    finally:
        next(running, None)


@pytest.mark.parametrize(("served_as", "trusted"), [("localhost", False), ("elsewhere.test", True)])
def test_tls_is_checked_chain_and_host_name(tmp_path: Any, served_as: str, trusted: bool):
    with _tls_server(tmp_path, served_as) as (server, cert):
        session = Session(aws_access_key_id="AKIDTEST", aws_secret_access_key="secret", region_name="us-east-1")
        client = session.client("iam", endpoint_url=f"https://localhost:{server.server_port}", verify=False)
        reads = LeanIamReads(client, lambda: ("AKIDTEST", "secret", None), verify=cert if trusted else True)
        reads._scope = ("us-east-1", "iam")  # botocore's side (unverified here) is not what is tested
        with pytest.raises(SSLError):  # an unknown issuer, or a certificate for another host
            reads.list_user_tags(UserName="x")
        assert server.requests == []  # nothing was sent


def test_tls_with_a_trusted_certificate_for_the_host_answers(tmp_path: Any):
    with _tls_server(tmp_path, "localhost") as (server, cert):
        reads = _reads_on(server, [], scheme="https", verify=cert)
        assert reads.list_user_tags(UserName="x")["Tags"] == [{"Key": "k", "Value": "v"}]
        assert len(server.requests) == 1
