"""Deployment files stay valid and in step with the permissions the code uses."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml
from cfnlint.api import lint_all

ROOT = Path(__file__).resolve().parent.parent


PAGINATED_BY = {"org": "organizations"}  # client variable -> service, where the two differ


def _actions_called_by_the_code() -> set[str]:
    """`service:action` (lower case) of every AWS call the audit makes: collector and Security Hub import."""
    called = set()
    for module in ("aws.py", "aws_reads.py", "aws_clients.py", "security_hub.py"):
        source = (ROOT / "bot" / module).read_text()
        calls = re.findall(r"\b(iam|sts|securityhub|cloudtrail)\.([a-z_]+)\(", source)
        called |= {f"{svc}:{name}" for svc, name in calls}
        paginated = re.findall(r'\b(\w+)\.get_paginator\("([a-z_]+)"\)', source)
        called |= {f"{PAGINATED_BY.get(client, client)}:{name}" for client, name in paginated}
    return {action.replace("_", "") for action in called if not action.endswith(":get_paginator")}


MULTI_ACCOUNT_ONLY = {"sts:assumerole", "organizations:listaccounts"}


def _granted(policy: dict) -> set[str]:
    statements = policy["Statement"]
    return {a.lower() for s in statements for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])}


def test_audit_policy_grants_exactly_what_the_code_calls():
    policy = json.loads((ROOT / "iam-policy.json").read_text())
    assert "securityhub:batchimportfindings" in _actions_called_by_the_code()
    assert _granted(policy) == _actions_called_by_the_code() - MULTI_ACCOUNT_ONLY


def test_member_role_template_lints_clean_and_matches_the_policy():
    template_text = (ROOT / "deploy" / "audit-role.yaml").read_text()
    problems = [m for m in lint_all(template_text) if m.rule.id[0] in "EW"]  # errors and warnings
    assert problems == []

    class Loader(yaml.SafeLoader):
        pass

    Loader.add_multi_constructor("!", lambda loader, suffix, node: None)
    template = yaml.load(template_text, Loader=Loader)
    role_policy = template["Resources"]["AuditRole"]["Properties"]["Policies"][0]["PolicyDocument"]
    account_policy = json.loads((ROOT / "iam-policy.json").read_text())
    assert _granted(role_policy) == _granted(account_policy) - {"sts:getcalleridentity"}


def test_bot_policy_allows_assuming_the_role_and_listing_accounts():
    actions = _granted(json.loads((ROOT / "deploy" / "bot-policy.json").read_text()))
    assert actions >= MULTI_ACCOUNT_ONLY
    assert _granted(json.loads((ROOT / "iam-policy.json").read_text())) <= actions
    assert actions >= _actions_called_by_the_code()


def _image() -> tuple[dict[str, str], str, list[str]]:
    """What the Dockerfile gives the running container: its ENV, its last WORKDIR, its VOLUMEs."""
    env: dict[str, str] = {}
    workdir, volumes = "/", []
    for line in (ROOT / "Dockerfile").read_text().splitlines():
        instruction, _, rest = line.strip().partition(" ")
        if instruction == "ENV":
            env.update(pair.split("=", 1) for pair in rest.split())
        elif instruction == "WORKDIR":
            workdir = rest.strip()
        elif instruction == "VOLUME":
            volumes += json.loads(rest)
    return env, workdir, volumes


def test_the_container_image_holds_everything_the_bot_runs_from(tmp_path):
    """Copy exactly what the Dockerfile copies and run the demo audit from that tree alone, as the image runs it."""
    import shutil
    import subprocess
    import sys

    copied = re.findall(r"^COPY (\S+) ", (ROOT / "Dockerfile").read_text(), flags=re.M)
    assert "requirements.txt" in copied
    app, data = tmp_path / "app", tmp_path / "data"
    app.mkdir()
    data.mkdir()
    for source in copied:
        path = ROOT / source
        if path.is_dir():
            shutil.copytree(path, app / source, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(path, app / source)
    image_env, _, _ = _image()
    assert image_env["PYTHONPATH"] == "/app"
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "AWS_EC2_METADATA_DISABLED": "true", "PYTHONPATH": str(app)}
    done = subprocess.run(
        [sys.executable, "-m", "bot", "check", "--demo"], cwd=data, env=env, capture_output=True, text=True,
        timeout=120,
    )  # fmt: skip
    assert done.returncode == 1, done.stderr  # the demo account has violations
    assert "VIOLATIONS (3)" in done.stdout


@pytest.mark.parametrize("env_file", ["the .env.example defaults", "DATABASE_URL= (empty)", "no DATABASE_URL"])
def test_the_container_keeps_its_store_in_the_data_volume(env_file):
    """`docker run --env-file .env` (its values override the image's ENV) still writes the store to /data."""
    import posixpath

    from dotenv import dotenv_values
    from sqlalchemy.engine import make_url

    from bot.config import load_config

    image_env, workdir, volumes = _image()
    env = dict(image_env)
    if env_file == "the .env.example defaults":
        env.update({k: v for k, v in dotenv_values(ROOT / ".env.example").items() if v is not None})
    elif env_file == "DATABASE_URL= (empty)":
        env["DATABASE_URL"] = ""
    database = make_url(load_config(env, dotenv_path=None).database_url).database or ""
    store = posixpath.normpath(posixpath.join(workdir, database))
    assert volumes == ["/data"] and store.startswith("/data/"), store


def _template(name: str) -> tuple[str, dict]:
    text = (ROOT / "deploy" / name).read_text()

    class Loader(yaml.SafeLoader):
        pass

    Loader.add_multi_constructor("!", lambda loader, suffix, node: None)
    return text, yaml.load(text, Loader=Loader)


def test_events_template_lints_clean_and_routes_exactly_the_events_the_bot_handles():
    from bot.events import API_CALL, CONSOLE_LOGIN, IAM_CHANGES, SIGN_IN

    text, template = _template("events.yaml")
    assert [m for m in lint_all(text) if m.rule.id[0] in "EW"] == []
    resources = template["Resources"]
    iam = resources["IamChangesRule"]["Properties"]["EventPattern"]
    assert iam["detail-type"] == [API_CALL] and iam["detail"]["eventSource"] == ["iam.amazonaws.com"]
    assert set(iam["detail"]["eventName"]) == set(IAM_CHANGES)
    login = resources["ConsoleLoginWithoutMfaRule"]["Properties"]["EventPattern"]
    assert login["detail-type"] == [SIGN_IN] and login["detail"]["eventName"] == [CONSOLE_LOGIN]
    assert login["detail"]["additionalEventData"] == {"MFAUsed": ["No"]}
    assert login["detail"]["userIdentity"] == {"type": ["IAMUser"]}
    queue = resources["EventsQueue"]["Properties"]
    assert "deadLetterTargetArn" in queue["RedrivePolicy"] and "maxReceiveCount" in queue["RedrivePolicy"]
    policy = resources["EventsQueuePolicy"]["Properties"]["PolicyDocument"]["Statement"][0]
    assert policy["Principal"] == {"Service": "events.amazonaws.com"} and policy["Action"] == "sqs:SendMessage"


def test_bot_policy_grants_the_queue_actions_the_poller_calls_on_the_templates_queue():
    called = set(re.findall(r"\.sqs\.([a-z_]+)\(", (ROOT / "bot" / "event_queue.py").read_text()))
    assert called == {"receive_message", "delete_message", "change_message_visibility"}
    policy = json.loads((ROOT / "deploy" / "bot-policy.json").read_text())
    (statement,) = [s for s in policy["Statement"] if any(str(a).startswith("sqs:") for a in s["Action"])]
    assert {a.split(":", 1)[1].lower() for a in statement["Action"]} == {c.replace("_", "") for c in called}
    queue_name = _template("events.yaml")[1]["Parameters"]["QueueName"]["Default"]
    assert statement["Resource"].endswith(f":{queue_name}")
    readme = (ROOT / "README.md").read_text()
    assert all(action in readme for action in statement["Action"])
