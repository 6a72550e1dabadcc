"""The docs stay true: the pictured messages fit Slack's limits, `check --json` matches its published
JSON Schema, and the configuration reference, .env.example and bot/config.py name the same variables."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import re
import sys
import urllib.request
from pathlib import Path

import jsonschema
import pytest

from bot import report
from bot.service import failed_account

ROOT = Path(__file__).resolve().parent.parent
SCHEMA = json.loads((ROOT / "docs" / "check.schema.json").read_text())


def _render_blocks():
    spec = importlib.util.spec_from_file_location("render_blocks", ROOT / "scripts" / "render_blocks.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["render_blocks"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def render_blocks():
    return _render_blocks()


@pytest.fixture(scope="module")
def demo(render_blocks, moto_server):
    """The `check --demo` audit, run once in-process, Slack people resolved as the pictures show them.

    moto keeps its accounts per process: emptied first of what earlier tests in this worker created."""
    urllib.request.urlopen(urllib.request.Request(f"{moto_server}/moto-api/reset", method="POST"), timeout=10)
    return render_blocks.demo_result()


def _texts(block: dict) -> list[tuple[str, str, int]]:
    """(what, text, limit) of every text in a block that Slack limits."""
    found = []
    if block["type"] == "section":
        if "text" in block:
            found.append(("section", block["text"]["text"], 3000))
        found += [("field", f["text"], 2000) for f in block.get("fields", [])]
        accessory = block.get("accessory") or {}
        if accessory.get("type") == "button":
            found.append(("button value", accessory.get("value", ""), 2000))
            found.append(("button text", accessory["text"]["text"], 75))
    elif block["type"] == "header":
        found.append(("header", block["text"]["text"], 150))
    elif block["type"] == "actions":
        for element in block["elements"]:
            found.append(("button value", element.get("value", ""), 2000))
            found.append(("button text", element["text"]["text"], 75))
    return found


def test_render_blocks_writes_each_surface_within_slacks_limits(render_blocks, demo, tmp_path):
    surfaces = render_blocks.build_surfaces(demo)
    assert [s.name for s in surfaces] == ["digest", "dm", "mfa-check", "app-home"]
    written = render_blocks.write(surfaces, tmp_path, png=False)
    assert {p.relative_to(tmp_path).as_posix() for p in written} == {
        "blocks/digest.json",
        "blocks/dm.json",
        "blocks/mfa-check.json",
        "blocks/app-home.json",
        "surfaces.md",
    }
    for surface in surfaces:
        message = json.loads((tmp_path / "blocks" / f"{surface.name}.json").read_text())
        assert message["blocks"] == surface.blocks
        assert message["text"] or surface.name == "app-home"  # a view has no notification text
        assert 0 < len(surface.blocks) <= surface.max_blocks <= 100, surface.name
        for block in surface.blocks:
            for what, text, limit in _texts(block):
                assert len(text) <= limit, f"{surface.name}: a {what} of {len(text)} characters"
    dm = next(s for s in surfaces if s.name == "dm")
    assert "<@U0BOB0001>" in json.dumps(dm.blocks)  # the demo's bob, found by his slack-user-id tag
    digest = json.dumps(next(s for s in surfaces if s.name == "digest").blocks)
    assert all(f"`{name}`" in digest for name in ("bob", "erin", "ivan"))  # the demo's violators

    page = (tmp_path / "surfaces.md").read_text()
    links = re.findall(r"\(https://app\.slack\.com/block-kit-builder/#([^)]+)\)", page)
    assert len(links) == 4
    from urllib.parse import unquote

    assert json.loads(unquote(links[1])) == {"blocks": dm.blocks}


def test_the_mrkdwn_sketch_parser_keeps_every_character_it_shows(render_blocks):
    runs = render_blocks.parse_mrkdwn(
        "*`bob`* in acme &amp; co · <@U0BOB0001> · <https://x.example|docs> _fix_ :warning:"
    )
    assert [r.text for r in runs if r.code] == ["bob"] and runs[0].bold
    assert "@bob" in [r.text for r in runs if r.mention]
    assert "docs" in [r.text for r in runs if r.link]
    assert any(r.italic and r.text == "fix" for r in runs)
    assert any(r.emoji == "warning" for r in runs)
    assert "acme & co" in "".join(r.text for r in runs)


def test_check_json_of_the_demo_matches_the_published_schema(demo):
    document = json.loads(report.to_json(demo))
    jsonschema.validate(document, SCHEMA, format_checker=jsonschema.FormatChecker())
    unresolved = dataclasses.replace(
        demo,
        accounts=[
            dataclasses.replace(a, users=[dataclasses.replace(u, slack_user_id=None) for u in a.users])
            for a in demo.accounts
        ]
        + [failed_account("210987654321", "AccessDenied: sts:AssumeRole")],
    )
    jsonschema.validate(json.loads(report.to_json(unresolved)), SCHEMA, format_checker=jsonschema.FormatChecker())


def test_the_schema_refuses_what_the_contract_forbids(demo):
    document = json.loads(report.to_json(demo))
    user = next(u for a in document["accounts"] for u in a["users"] if u["status"] == "compliant")
    for broken in (
        {**user, "status": "ok"},
        {**user, "mfa_devices": []},  # a user with MFA never lists []
        {**user, "mfa_devices": [{"serial": "x", "type": "sms"}]},
        {k: v for k, v in user.items() if k != "slack_user_id"},
    ):
        bad = json.loads(json.dumps(document))
        bad["accounts"][0]["users"] = [broken]
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(bad, SCHEMA)


def _config_variables() -> set[str]:
    source = (ROOT / "bot" / "config.py").read_text()
    return set(re.findall(r'env(?:\.get\(|, )"([A-Z][A-Z0-9_]+)"', source))


def test_configuration_reference_env_example_and_config_name_the_same_variables():
    read = _config_variables()
    assert {"SLACK_BOT_TOKEN", "DATABASE_URL", "MFA_SCOPE", "EVENTS_QUEUE_URL"} <= read
    example = set(re.findall(r"^(?:# )?([A-Z][A-Z0-9_]+)=", (ROOT / ".env.example").read_text(), re.M))
    reference = set(re.findall(r"`([A-Z][A-Z0-9_]+)`", (ROOT / "docs" / "configuration.md").read_text()))
    assert read - example == set(), ".env.example lacks these"
    assert read - reference == set(), "docs/configuration.md lacks these"
    assert example - read <= {"AWS_DEFAULT_REGION", "AWS_MAX_ATTEMPTS"}  # boto3's own, documented too
    assert example - reference == set()


def test_configuration_reference_states_config_defaults():
    from bot.config import load_config

    config = load_config({}, dotenv_path=None)
    rows = {
        m[0]: m[1]
        for m in re.findall(
            r"^\| `([A-Z][A-Z0-9_]+)` \|.*\| `([^`]+)`[^|]*\|$", (ROOT / "docs" / "configuration.md").read_text(), re.M
        )
    }
    for name, value in rows.items():
        field = name.lower()
        if not hasattr(config, field) or re.fullmatch(r"[A-Z_]+", value):
            continue  # not a Config field, or a default that is another variable
        actual = getattr(config, field)
        if isinstance(actual, bool):
            actual = {"on": True, "off": False, "true": True, "false": False}[value] == actual
            assert actual, name
        else:
            assert str(actual) == value or (isinstance(actual, float) and float(value) == actual), name


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading."""
    return re.sub(r"[^a-z0-9 _-]", "", heading.strip().lower()).replace(" ", "-")


def test_every_relative_link_in_the_readme_and_docs_resolves():
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    for page in pages:
        text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if target.startswith(("http://", "https://", "mailto:")):
                continue
            path, _, anchor = target.partition("#")
            linked = (page.parent / path).resolve() if path else page
            assert linked.exists(), f"{page.name}: {target} does not exist"
            if anchor and linked.suffix == ".md":
                headings = re.findall(r"^#+ (.+)$", re.sub(r"```.*?```", "", linked.read_text(), flags=re.S), re.M)
                assert anchor in {_slug(h) for h in headings}, f"{page.name}: no heading #{anchor} in {linked.name}"


def test_readme_keeps_the_test_command_ci_runs_and_the_demo_command():
    readme = (ROOT / "README.md").read_text()
    test = "python3 -m venv .venv && .venv/bin/pip install -r requirements-dev.txt && .venv/bin/python -m pytest"
    demo = (
        "python3 -m venv .venv && .venv/bin/pip install -r requirements-demo.txt"
        " && .venv/bin/python -m bot check --demo"
    )
    assert f"```sh\n{test}\n```" in readme
    assert f"```sh\n{demo}\n```" in readme
    ci = (ROOT / ".ci" / "run").read_text()
    assert "requirements-dev.txt" in ci and ".venv/bin/python -m pytest" in ci
    assert len(readme.splitlines()) < 300, "the README is for users: move reference material to docs/"
