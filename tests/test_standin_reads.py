"""The AWS stand-in's direct answers to the per-user reads are moto's own, byte for byte but the RequestId."""

from __future__ import annotations

import re
from typing import Any

import pytest
from botocore.exceptions import ClientError

from bot.demo import _iam_backend, add_user, demo_client, moto_wsgi_app
from bot.standin_reads import list_answer
from tests.fixtures_aws import seed_users
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


def _answer(iam: Any, op: str, name: str | None, **params: Any) -> tuple[int, bytes]:
    seen: list[tuple[int, bytes]] = []

    def keep(http_response: Any, **_: Any) -> None:
        seen.append((http_response.status_code, http_response.content))

    iam.meta.events.register("after-call.iam", keep)
    iam.meta.events.register("after-call-error.iam", keep)
    try:
        getattr(iam, op)(**({"UserName": name} if name is not None else {}), **params)
    except ClientError:
        pass
    finally:
        iam.meta.events.unregister("after-call.iam", keep)
        iam.meta.events.unregister("after-call-error.iam", keep)
    status, body = seen[-1]
    return status, re.sub(rb"<RequestId>[^<]*</RequestId>", b"<RequestId/>", body)


@pytest.fixture
def seeded(moto_url: str, aws_env: dict[str, str]) -> str:
    return seed_users(moto_url, USERS)


def test_the_stand_in_answers_as_moto_does(seeded: str):
    direct = demo_client(seeded)
    with IamProxy(moto_wsgi_app()) as moto_itself:
        through_moto = demo_client(moto_itself.url)
        answers = {(op, name): (_answer(direct, op, name), _answer(through_moto, op, name)) for op, name in CALLS}
    differ = {call: pair for call, pair in answers.items() if pair[0] != pair[1]}
    assert differ == {}
    assert {got[0] for got, _ in answers.values()} == {200, 404}  # answers and NoSuchEntity errors both compared


LISTS = [
    ("list_users", {}),
    ("list_users", {"MaxItems": 1000}),
    ("list_users", {"MaxItems": 2}),  # moto ignores MaxItems here: one page either way
    ("list_users", {"PathPrefix": "/x/"}),
    ("list_virtual_mfa_devices", {}),
    ("list_virtual_mfa_devices", {"AssignmentStatus": "Any", "MaxItems": 1000}),
    ("list_virtual_mfa_devices", {"AssignmentStatus": "Assigned"}),
    ("list_virtual_mfa_devices", {"AssignmentStatus": "Unassigned"}),
    ("list_virtual_mfa_devices", {"MaxItems": 1}),  # truncated: moto answers itself
]


def test_the_stand_in_lists_as_moto_does(seeded: str):
    seeding = demo_client(seeded)
    add_user(seeding, "pathy", console=True, mfa="virtual")
    seeding.create_user(UserName="deep", Path="/x/y/")
    add_user(seeding, "unused", console=False, mfa="unenabled-virtual")
    seeding.tag_user(UserName="alice", Tags=[{"Key": "after", "Value": "enable"}])  # not in the device's copy
    direct = demo_client(seeded)
    with IamProxy(moto_wsgi_app()) as moto_itself:
        through_moto = demo_client(moto_itself.url)
        answers = {
            (op, str(params)): (_answer(direct, op, None, **params), _answer(through_moto, op, None, **params))
            for op, params in LISTS
        }
    differ = {call: pair for call, pair in answers.items() if pair[0] != pair[1]}
    assert differ == {}
    assert all(b"<member>" in got[1] for got, _ in answers.values())
    # ... and the stand-in answered those lists itself, except where moto pages or filters by path
    backend = _iam_backend("123456789012")
    served = {(op, str(params)) for op, params in LISTS if list_answer(backend, _ACTIONS[op], _fields(params))}
    assert served == {(op, str(params)) for op, params in LISTS[:3] + LISTS[4:8]}


_ACTIONS = {"list_users": "ListUsers", "list_virtual_mfa_devices": "ListVirtualMFADevices"}


def _fields(params: dict[str, Any]) -> dict[str, list[str]]:
    return {key: [str(value)] for key, value in params.items()}
