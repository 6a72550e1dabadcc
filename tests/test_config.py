"""Configuration: typed, validated, one clear line per problem, secrets never echoed."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from bot.config import ConfigError, load_config


def load(**env: str):
    return load_config(env, dotenv_path=None)


def test_defaults_match_the_contract():
    config = load()
    assert config.slack_api_url == "https://slack.com/api/"
    assert (config.port, config.digest_cron, config.digest_timezone) == (3000, "0 9 * * 1-5", "UTC")
    assert config.admin_user_ids == frozenset()
    assert config.database_url == "sqlite:///mfa_bot.db"
    assert (config.grace_period_days, config.nudge_cooldown_hours) == (0, 24)
    assert not config.socket_mode
    assert config.tag_exemptions is True


@pytest.mark.parametrize(("raw", "on"), [("on", True), ("off", False), ("OFF", False), ("true", True)])
def test_tag_exemptions_on_or_off(raw, on):
    assert load(TAG_EXEMPTIONS=raw).tag_exemptions is on


def test_values_are_parsed():
    config = load(
        ADMIN_USER_IDS="U0AAA111, W0BBB222",
        DIGEST_CRON="off",
        SLACK_APP_TOKEN="xapp-1-x",
        SLACK_API_URL="http://127.0.0.1:9999/api",
        ACCOUNT_CHANNELS="111122223333:C0AAA,444455556666:C0BBB",
        DIGEST_CHANNEL="C0DIGEST",
        AWS_ACCOUNT_IDS="111122223333,111122223333",
        AWS_ROLE_NAME="MfaBotAudit",
        EMAIL_DOMAIN="@example.com",
    )
    assert config.admin_user_ids == {"U0AAA111", "W0BBB222"}
    assert config.digest_cron is None and config.socket_mode
    assert config.slack_api_url == "http://127.0.0.1:9999/api/"
    assert config.account_channels == {"111122223333": "C0AAA", "444455556666": "C0BBB"}
    assert config.aws_account_ids == ("111122223333",)
    assert config.email_domain == "example.com"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"GRACE_PERIOD_DAYS": "abc"}, "GRACE_PERIOD_DAYS must be a whole number, got 'abc'"),
        ({"NUDGE_COOLDOWN_HOURS": "-1"}, "NUDGE_COOLDOWN_HOURS must be at least 0, got -1"),
        ({"ADMIN_USER_IDS": "alice"}, "ADMIN_USER_IDS: 'alice' is not a Slack user ID"),
        ({"DIGEST_CHANNEL": "#security"}, "DIGEST_CHANNEL must be a channel ID"),
        ({"DIGEST_TIMEZONE": "Mars/Olympus"}, "DIGEST_TIMEZONE must be an IANA zone"),
        ({"AWS_ACCOUNT_IDS": "1234"}, "AWS_ACCOUNT_IDS: '1234' is not a 12-digit account ID"),
        ({"AWS_ACCOUNT_IDS": "111122223333"}, "AWS_ROLE_NAME is required"),
        ({"ACCOUNT_CHANNELS": "prod:C0AAA"}, "ACCOUNT_CHANNELS: 'prod:C0AAA' is not ACCOUNT_ID:CHANNEL_ID"),
        ({"ESCALATION_CHANNEL": "C0ESC"}, "ACCOUNT_CHANNELS and ESCALATION_CHANNEL work with the digest"),
        ({"AWS_ORGANIZATION": "maybe"}, "AWS_ORGANIZATION must be true or false"),
        ({"TAG_EXEMPTIONS": "sometimes"}, "TAG_EXEMPTIONS must be true or false"),
        ({"SLACK_API_URL": "ftp://x"}, "SLACK_API_URL must be an http(s) URL"),
    ],
)
def test_bad_values_are_one_line_naming_the_variable(env, message):
    with pytest.raises(ConfigError) as info:
        load(**env)
    assert str(info.value).startswith(message)
    assert "\n" not in str(info.value)


def test_a_malformed_secret_is_named_but_never_echoed():
    with pytest.raises(ConfigError) as info:
        load(SLACK_BOT_TOKEN="xoxp-super-secret-value")
    assert "SLACK_BOT_TOKEN" in str(info.value) and "super-secret" not in str(info.value)


def test_environment_wins_over_dotenv(tmp_path):
    dotenv = tmp_path / ".env"
    dotenv.write_text("GRACE_PERIOD_DAYS=5\nNUDGE_COOLDOWN_HOURS=2\n")
    config = load_config({"GRACE_PERIOD_DAYS": "1"}, dotenv_path=dotenv)
    assert (config.grace_period_days, config.nudge_cooldown_hours) == (1, 2)


def test_dotenv_example_lists_every_setting_and_loads_as_the_defaults():
    root = Path(__file__).resolve().parent.parent
    example = root / ".env.example"
    read_by_config = set(re.findall(r'env, "([A-Z_]+)"', (root / "bot" / "config.py").read_text()))
    listed = set(re.findall(r"^#? ?([A-Z_]+)=", example.read_text(), flags=re.M))
    assert read_by_config - listed == set()
    assert load_config({}, dotenv_path=example) == load()


def test_repr_shows_no_token_secret_or_password():
    config = load(
        SLACK_BOT_TOKEN="xoxb-bot-SECRET1",
        SLACK_APP_TOKEN="xapp-app-SECRET2",
        SLACK_SIGNING_SECRET="SECRET3",
        AWS_EXTERNAL_ID="SECRET4",
        DATABASE_URL="postgresql://app:SECRET5@db/mfa?sslpassword=SECRET6",
    )
    shown = repr(config) + str(config) + f"{config!r}"
    assert "SECRET" not in shown
    assert "slack_bot_token='***'" in shown and "database_url='postgresql://app:***@db/mfa?sslpassword=***'" in shown
    assert "port=3000" in shown and "slack_app_token='***'" in shown
    assert "slack_signing_secret=None" in repr(load())


@pytest.mark.parametrize("url", ["mysql://app:hunter2@db/mfa", "app:hunter2@db/mfa", "postgresql://app:hunter2@db:x/y"])
def test_database_url_is_validated_with_the_rest_and_never_echoed(url):
    with pytest.raises(ConfigError) as info:
        load(DATABASE_URL=url)
    assert str(info.value).startswith("DATABASE_URL") and "hunter2" not in str(info.value)
    assert "\n" not in str(info.value)


def test_events_queue_url_alert_channel_and_the_queue_region():
    from bot.config import queue_region

    config = load(
        EVENTS_QUEUE_URL="https://sqs.eu-west-1.amazonaws.com/123456789012/mfa-bot-events", DIGEST_CHANNEL="C0DIGEST"
    )
    assert config.events_queue_url.endswith("/123456789012/mfa-bot-events")
    assert config.alerts_to == "C0DIGEST"  # ALERT_CHANNEL defaults to DIGEST_CHANNEL
    assert load(ALERT_CHANNEL="C0ALERTS", DIGEST_CHANNEL="C0DIGEST").alerts_to == "C0ALERTS"
    assert load().events_queue_url is None and load().alerts_to is None
    assert queue_region("https://sqs.eu-west-1.amazonaws.com/123456789012/q") == "eu-west-1"
    assert queue_region("https://us-east-2.queue.amazonaws.com/123456789012/q") == "us-east-2"
    assert queue_region("https://sqs.cn-north-1.amazonaws.com.cn/123456789012/q") == "cn-north-1"
    assert queue_region("http://127.0.0.1:5000/123456789012/q") is None  # a local SQS: AWS_DEFAULT_REGION


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"EVENTS_QUEUE_URL": "mfa-bot-events", "DIGEST_CHANNEL": "C0D"}, "EVENTS_QUEUE_URL must be an SQS queue URL"),
        ({"EVENTS_QUEUE_URL": "https://sqs.us-east-1.amazonaws.com/12/q", "DIGEST_CHANNEL": "C0D"}, "EVENTS_QUEUE_URL"),
        ({"EVENTS_QUEUE_URL": "https://sqs.us-east-1.amazonaws.com/123456789012/q"}, "set ALERT_CHANNEL or DIGEST"),
        ({"ALERT_CHANNEL": "#security"}, "ALERT_CHANNEL must be a channel ID"),
    ],
)
def test_bad_events_settings_are_one_line(env, message):
    with pytest.raises(ConfigError) as caught:
        load(**env)
    assert message in str(caught.value) and "\n" not in str(caught.value)
