"""Deployment files stay valid and in step with the permissions the code uses."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml
from cfnlint.api import lint_all

ROOT = Path(__file__).resolve().parent.parent


PAGINATED_BY = {"org": "organizations"}  # client variable -> service, where the two differ


def _actions_called_by_the_code() -> set[str]:
    """`service:action` (lower case) of every AWS call the audit makes: collector and Security Hub import."""
    called = set()
    for module in ("aws.py", "security_hub.py"):
        source = (ROOT / "bot" / module).read_text()
        called |= {f"{svc}:{name}" for svc, name in re.findall(r"\b(iam|sts|securityhub)\.([a-z_]+)\(", source)}
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


def test_the_container_image_holds_everything_the_bot_runs_from(tmp_path):
    """Copy exactly what the Dockerfile copies and run the demo audit from that tree alone."""
    import shutil
    import subprocess
    import sys

    copied = re.findall(r"^COPY (\S+) ", (ROOT / "Dockerfile").read_text(), flags=re.M)
    assert "requirements.txt" in copied
    for source in copied:
        path = ROOT / source
        if path.is_dir():
            shutil.copytree(path, tmp_path / source, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(path, tmp_path / source)
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "AWS_EC2_METADATA_DISABLED": "true"}
    done = subprocess.run(
        [sys.executable, "-m", "bot", "check", "--demo"], cwd=tmp_path, env=env, capture_output=True, text=True,
        timeout=120,
    )  # fmt: skip
    assert done.returncode == 1, done.stderr  # the demo account has violations
    assert "VIOLATIONS (3)" in done.stdout
