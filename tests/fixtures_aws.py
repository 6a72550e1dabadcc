"""AWS fixtures: one moto server per test session (over HTTP), reset before each test."""

from __future__ import annotations

import dataclasses
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from bot.config import Config
from bot.demo import DEMO_CREDENTIALS, add_user, demo_client, local_iam_server, role_client, seed_demo_account
from tests.iam_proxy import IamProxy

ROLE = "MfaBotAudit"
MANAGEMENT = "123456789012"  # the demo account, the Organization's management account

FAKE_AWS_ENV = {
    "AWS_ACCESS_KEY_ID": DEMO_CREDENTIALS["aws_access_key_id"],
    "AWS_SECRET_ACCESS_KEY": DEMO_CREDENTIALS["aws_secret_access_key"],
    "AWS_SESSION_TOKEN": DEMO_CREDENTIALS["aws_session_token"],
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
    "AWS_MAX_ATTEMPTS": "2",
}


def seed_users(moto_url: str, users: dict[str, dict[str, Any]]) -> str:
    """Create `users` ({name: {"console", "mfa", "tags", "reset"}}) in the demo account; the URL back."""
    iam = demo_client(moto_url)
    for name, kind in users.items():
        add_user(iam, name, console=kind["console"], mfa=kind.get("mfa"), tags=kind.get("tags"),
                 reset=kind.get("reset", False))  # fmt: skip
    return moto_url


@pytest.fixture(scope="session")
def moto_server() -> Iterator[str]:
    """moto's IAM/STS server on a loopback port for the whole session; yields its URL."""
    with local_iam_server() as url:
        yield url


@pytest.fixture
def moto_url(moto_server: str) -> str:
    """The moto server, emptied of everything the previous test created."""
    urllib.request.urlopen(urllib.request.Request(f"{moto_server}/moto-api/reset", method="POST"), timeout=10)
    return moto_server


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Throwaway credentials in the environment; no real AWS profile, no instance metadata."""
    for key, value in FAKE_AWS_ENV.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/dev/null")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
    return dict(FAKE_AWS_ENV)


@pytest.fixture
def iam_proxy(moto_url: str) -> Iterator[IamProxy]:
    """A counting, fault-injecting proxy in front of the (reset) moto server."""
    with IamProxy(moto_url) as proxy:
        yield proxy


@pytest.fixture
def demo_account(moto_url: str, aws_env: dict[str, str]) -> str:
    """The demo account seeded into the reset moto server; yields the moto URL."""
    seed_demo_account(demo_client(moto_url))
    return moto_url


@pytest.fixture
def organization(demo_account: str) -> dict[str, str]:
    """Management account (the demo account) + 3 active members + 1 closed member; yields name -> id."""
    org = demo_client(demo_account, "organizations")
    org.create_organization(FeatureSet="ALL")
    ids = {}
    for name in ("dev", "prod", "sandbox", "retired"):
        status = org.create_account(AccountName=name, Email=f"{name}@example.com")["CreateAccountStatus"]
        ids[name] = status["AccountId"]
    org.close_account(AccountId=ids["retired"])
    dev = role_client(demo_account, ids["dev"], ROLE)
    dev.create_account_alias(AccountAlias="acme-dev")
    add_user(dev, "dev-alice")
    add_user(dev, "dev-bob", mfa="virtual")
    add_user(role_client(demo_account, ids["prod"], ROLE), "prod-carol", mfa="virtual")
    add_user(role_client(demo_account, ids["retired"], ROLE), "ghost")
    return ids


def org_config(proxy_url: str, **overrides: Any) -> Config:
    """A Config auditing the whole Organization through ROLE at `proxy_url` (moto, or the proxy in front)."""
    base = Config(
        aws_endpoint_url=proxy_url,
        aws_organization=True,
        aws_role_name=ROLE,
        aws_max_concurrency=2,
        report_deadline_seconds=5,
    )
    return dataclasses.replace(base, **overrides)


@pytest.fixture(autouse=True)
def fast_cloudtrail_pacing(monkeypatch: pytest.MonkeyPatch) -> None:
    """LookupEvents paced at 1,000 a second in-process (the 2 a second pacing is tested with a fake clock)."""
    from bot import aws
    from bot.pacing import Rate

    monkeypatch.setattr(aws, "CLOUDTRAIL_RATE", Rate(1000.0, burst=1))
