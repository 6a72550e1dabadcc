"""The /mfa-check grammar: every form, and everything that must fall back to usage."""

from __future__ import annotations

import pytest

from bot.commands import (
    AccountAudit,
    Audit,
    Digest,
    Exempt,
    Help,
    Link,
    Me,
    Nudge,
    Unexempt,
    Usage,
    UserDetail,
    UserRef,
    parse,
    parse_slack_user,
    requires_admin,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", Audit()),
        ("   ", Audit()),
        (None, Audit()),
        ("me", Me()),
        ("ME", Me()),
        ("help", Help()),
        ("digest", Digest()),
        ("user bob", UserDetail(UserRef("bob"))),
        ("user svc-deploy+ci@x.io", UserDetail(UserRef("svc-deploy+ci@x.io"))),
        ("user 123456789012/bob", UserDetail(UserRef("bob", "123456789012"))),
        ("nudge bob", Nudge(UserRef("bob"))),
        ("nudge all", Nudge(None)),
        ("nudge ALL", Nudge(None)),
        ("unexempt bob", Unexempt(UserRef("bob"))),
        ("exempt bob 30d on leave until March", Exempt(UserRef("bob"), 30, "on leave until March")),
        ("exempt bob 1d x", Exempt(UserRef("bob"), 1, "x")),
        ("exempt bob 365d x", Exempt(UserRef("bob"), 365, "x")),
        ("exempt bob 7 hardware key in the post", Exempt(UserRef("bob"), 7, "hardware key in the post")),
        ("exempt bob 7d R&amp;D &lt;lab&gt;", Exempt(UserRef("bob"), 7, "R&D <lab>")),
        ("link bob <@U0BOB0001>", Link(UserRef("bob"), "U0BOB0001")),
        ("link bob <@U0BOB0001|bob.smith>", Link(UserRef("bob"), "U0BOB0001")),
        ("link bob U0BOB0001", Link(UserRef("bob"), "U0BOB0001")),
        ("link bob W0ENTERPR1", Link(UserRef("bob"), "W0ENTERPR1")),
        ("123456789012", AccountAudit("123456789012")),
        ("acme-prod", AccountAudit("acme-prod")),
        ("  prod ", AccountAudit("prod")),
        ("frobnicate", AccountAudit("frobnicate")),  # an admin hears "no configured account frobnicate"
        ("a1b", AccountAudit("a1b")),
        ("a" * 63, AccountAudit("a" * 63)),
    ],
)
def test_each_form_parses(text: str | None, expected: object) -> None:
    assert parse(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "Prod",
        "ab",
        "a" * 64,
        "-prod",
        "prod-",
        "acme_prod",
        "acme--prod",
        "prod dev",
        "123456789012 bob",
        "user",
        "user bob alice",
        "user :smile:",
        "user 🙂",
        "user bob/alice",
        "user " + "a" * 65,
        "exempt",
        "exempt bob",
        "exempt bob 30d",
        "exempt bob 0d reason",
        "exempt bob 366d reason",
        "exempt bob -5d reason",
        "exempt bob thirty reason",
        "exempt bob 30d " + "x" * 600,
        "unexempt",
        "unexempt bob alice",
        "link bob",
        "link bob @bob",
        "link bob <#C0123|general>",
        "link bob <@U0BOB0001> extra",
        "nudge",
        "nudge bob alice",
        "me please",
        "help me",
        "digest now",
        "🙂",
        ":tada: :tada:",
        "x" * 5000,
        "user\u00a0bob\u200b",
    ],
)
def test_unparsable_text_is_usage(text: str) -> None:
    command = parse(text)
    assert isinstance(command, Usage)
    assert command.error


def test_usage_errors_never_echo_the_text() -> None:
    for text in ["user bob alice", "exempt bob 999d secret-project", "frobnicate bob", "link bob @bob"]:
        command = parse(text)
        assert isinstance(command, Usage)
        assert "bob" not in command.error and "secret" not in command.error


def test_admin_only_commands() -> None:
    assert not requires_admin(Me()) and not requires_admin(Help()) and not requires_admin(Usage("x"))
    for text in [
        "",
        "user bob",
        "nudge all",
        "exempt bob 3d x",
        "unexempt bob",
        "link bob U0BOB0001",
        "digest",
        "prod",
        "123456789012",
    ]:
        assert requires_admin(parse(text)), text


def test_mentions() -> None:
    assert parse_slack_user("<@U123ABC>") == "U123ABC"
    assert parse_slack_user("<@U123ABC|someone>") == "U123ABC"
    assert parse_slack_user("U123ABC") == "U123ABC"
    assert parse_slack_user("@someone") is None
    assert parse_slack_user("<!channel>") is None


def test_the_account_form_is_in_the_usage_table_for_admins_only() -> None:
    from bot.commands import GRAMMAR

    assert ("/mfa-check ACCOUNT", "admins", "audit one account (its 12-digit id or its alias)") in GRAMMAR
