"""`check --demo`: a local IAM (moto's server, in-process, over HTTP) seeded with a small account.

The audit then runs the very same code path as against AWS, through AWS_ENDPOINT_URL.
"""

from __future__ import annotations

import contextlib
import logging
import os
import zlib
from collections.abc import Iterator
from typing import Any

import boto3

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


@contextlib.contextmanager
def local_iam_server() -> Iterator[str]:
    """Run moto's server on a free loopback port for the duration; yields its endpoint URL."""
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


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
            yield endpoint
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
