"""The AWS stand-in's direct answers to the per-user reads are moto's own, byte for byte but the RequestId."""

from __future__ import annotations

import re
from typing import Any

import pytest
from botocore.exceptions import ClientError

from bot.demo import add_user, demo_client, moto_wsgi_app
from tests.iam_proxy import IamProxy

USERS = {
    "alice": {"console": True, "mfa": "virtual", "tags": {"email": "alice@example.com"}},
    "dave": {"console": True, "mfa": "hardware"},
    "carol": {"console": True, "mfa": "fido", "tags": {"k<&>": 'v&"<x>'}},
    "ivan": {"console": True, "reset": True},
    "frank": {"console": False},
    "a+b=c,d.e@f_g-h": {"console": True, "tags": {"mfa-exempt": "break-glass"}},
}
CALLS = [
    (op, name) for name in [*USERS, "nobody"] for op in ("get_login_profile", "list_mfa_devices", "list_user_tags")
]


def _answer(iam: Any, op: str, name: str) -> tuple[int, bytes]:
    seen: list[tuple[int, bytes]] = []

    def keep(http_response: Any, **_: Any) -> None:
        seen.append((http_response.status_code, http_response.content))

    iam.meta.events.register("after-call.iam", keep)
    iam.meta.events.register("after-call-error.iam", keep)
    try:
        getattr(iam, op)(UserName=name)
    except ClientError:
        pass
    finally:
        iam.meta.events.unregister("after-call.iam", keep)
        iam.meta.events.unregister("after-call-error.iam", keep)
    status, body = seen[-1]
    return status, re.sub(rb"<RequestId>[^<]*</RequestId>", b"<RequestId/>", body)


@pytest.fixture
def seeded(moto_url: str, aws_env: dict[str, str]) -> str:
    iam = demo_client(moto_url)
    for name, kind in USERS.items():
        add_user(iam, name, console=kind["console"], mfa=kind.get("mfa"), tags=kind.get("tags"),
                 reset=kind.get("reset", False))  # fmt: skip
    return moto_url


def test_the_stand_in_answers_as_moto_does(seeded: str):
    direct = demo_client(seeded)
    with IamProxy(moto_wsgi_app()) as moto_itself:
        through_moto = demo_client(moto_itself.url)
        answers = {(op, name): (_answer(direct, op, name), _answer(through_moto, op, name)) for op, name in CALLS}
    differ = {call: pair for call, pair in answers.items() if pair[0] != pair[1]}
    assert differ == {}
    assert {got[0] for got, _ in answers.values()} == {200, 404}  # answers and NoSuchEntity errors both compared
