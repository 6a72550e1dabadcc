"""The live wave's lean IAM reads (bot/iam_query.py) answer exactly as the botocore client does.

Signatures are compared with botocore's own SigV4 signer; answers with botocore's through moto's
server over HTTP (errors included); retries, transport failures and hostile answers against a
small local HTTP server; and the cases where the lean path must stay off.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.exceptions import BotoCoreError, ClientError, EndpointConnectionError
from botocore.parsers import ResponseParserError

from bot.aws_clients import Session, service_client
from bot.aws_reads import describe_error, user_tags
from bot.demo import add_user, demo_client
from bot.iam_query import CONTENT_TYPE, LeanIamReads, lean_iam_reads, sigv4_headers

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
    iam = demo_client(moto_url)
    for name, kind in USERS.items():
        add_user(iam, name, console=kind["console"], mfa=kind.get("mfa"), tags=kind.get("tags"),
                 reset=kind.get("reset", False))  # fmt: skip
    return moto_url


def _lean(url: str) -> tuple[Any, Any]:
    session = Session()
    client = service_client(session, "iam", url, 4)
    reads = lean_iam_reads(client, session, None, 4)
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
        status, body = server.script.pop(0) if server.script else server.default
        self.send_response(status)
        self.send_header("Content-Type", "text/xml")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


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


@pytest.fixture
def scripted() -> Iterator[Any]:
    server: Any = ThreadingHTTPServer(("127.0.0.1", 0), _Scripted)
    server.script, server.requests, server.default = [], [], OK_TAGS
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def _reads_on(server: Any, sleeps: list[float]) -> LeanIamReads:
    session = Session(aws_access_key_id="AKIDTEST", aws_secret_access_key="secret", region_name="us-east-1")
    client = session.client("iam", endpoint_url=f"http://127.0.0.1:{server.server_port}")
    reads = LeanIamReads(client, lambda: ("AKIDTEST", "secret", None), sleep=sleeps.append)
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
    reads._pool.clear()  # no connection kept from before: each attempt connects, and is refused
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
    assert lean_iam_reads(client, object(), None, 4) is client
