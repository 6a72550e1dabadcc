"""The remediation copy: how to turn MFA on, worded in the data file `remediation.toml`, rendered here.

The console steps, the CLI steps, the access-key steps, the permission note, the finding text and
the AWS doc links live in that one file (read with tomllib), so a team changes the wording without
touching code. Each entry is a template with `{placeholders}` that only the bot fills, every value
escaped for where it goes (inline code, a code block, a link).

The file is read and checked once, when this module is imported: a missing file, bad TOML, a
missing entry or an unknown placeholder raises `RemediationError` at startup, never in the middle
of a DM. `load` reads another file and `use` swaps the copy in force (tests, a team's own wording).
"""

from __future__ import annotations

import re
import string
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from bot.config import ConfigError
from bot.messages.text import code, code_safe, link

FILE = Path(__file__).with_name("remediation.toml")

# (table, key) -> the placeholders the entry may use; None: not a template (a list of plain values, a URL)
TEMPLATES: dict[tuple[str, str], frozenset[str]] = {
    ("console", "title"): frozenset(),
    ("console", "sign_in"): frozenset({"user", "url"}),
    ("console", "sign_in_without_url"): frozenset({"user"}),
    ("console", "sign_in_each"): frozenset(),
    ("console", "recheck"): frozenset({"button"}),
    ("cli", "title"): frozenset(),
    ("cli", "title_after_console"): frozenset(),
    ("cli", "commands"): frozenset({"name", "serial"}),
    ("access_keys", "text"): frozenset({"user", "serial"}),
    ("permission", "note"): frozenset({"actions"}),
    ("finding", "text"): frozenset(),
}
LISTS = {("console", "steps"), ("permission", "actions")}
URLS = {("links", "setup_guide")}
_URL = re.compile(r"https://[^\s<>|`]+")

SIGNIN_HOSTS = {
    "aws": "signin.aws.amazon.com",
    "aws-us-gov": "signin.amazonaws-us-gov.com",
    "aws-cn": "signin.amazonaws.cn",
}
_ACCOUNT_ID = re.compile(r"[0-9]{12}")
_ACCOUNT_ALIAS = re.compile(r"[a-z0-9](?:[a-z0-9]|-(?!-)){1,61}[a-z0-9]")


class RemediationError(ConfigError):
    """The remediation copy file is missing or invalid (raised at startup)."""


@dataclass(frozen=True)
class Remediation:
    """The checked remediation copy: every entry of the file, by (table, key)."""

    texts: Mapping[tuple[str, str], str]
    lists: Mapping[tuple[str, str], tuple[str, ...]]

    def _fill(self, table: str, key: str, **fields: str) -> str:
        return self.texts[(table, key)].format(**fields)

    def console_steps(self, signins: Sequence[tuple[str, str | None]], recheck_button: str | None = None) -> str:
        """The numbered console steps, mrkdwn. `signins`: (IAM user name, sign-in URL or None) of each
        user the steps are for (one: named with its URL; several: "each IAM user above");
        `recheck_button`: the DM's button label, for a last step that presses it."""
        if len(signins) == 1:
            name, url = signins[0]
            first = self._fill("console", "sign_in", user=code(name), url=link(url)) if url else ""
            first = first or self._fill("console", "sign_in_without_url", user=code(name))
        else:
            first = self._fill("console", "sign_in_each")
        steps = [first, *self.lists[("console", "steps")]]
        if recheck_button is not None:
            steps.append(self._fill("console", "recheck", button=recheck_button))
        numbered = "\n".join(f"{index}. {step}" for index, step in enumerate(steps, start=1))
        return f"{self._fill('console', 'title')}\n{numbered}"

    def cli_title(self, after_console: bool) -> str:
        """ "With the AWS CLI", or "Or with …" below the console steps."""
        return self._fill("cli", "title_after_console" if after_console else "title")

    def cli_steps(self, user_name: str, serial: str) -> str:
        """The AWS CLI commands that give `user_name` a virtual MFA device (`serial`), as a code block."""
        return "```" + self._fill("cli", "commands", name=code_safe(user_name), serial=code_safe(serial)) + "```"

    def key_steps(self, user_name: str, serial: str) -> str:
        """For a key-only user: MFA on the CLI with get-session-token, or a role instead, mrkdwn."""
        return self._fill("access_keys", "text", user=code(user_name), serial=code_safe(serial))

    def permission_note(self) -> str:
        """The IAM permission a person needs to manage their own MFA device, mrkdwn."""
        actions = ", ".join(code(action) for action in self.lists[("permission", "actions")])
        return self._fill("permission", "note", actions=actions)

    @property
    def finding_text(self) -> str:
        """The remediation text of an ASFF/OCSF finding (plain text)."""
        return self._fill("finding", "text")

    @property
    def setup_guide_url(self) -> str:
        """AWS's guide to enabling MFA for an IAM user."""
        return self.texts[("links", "setup_guide")]


def _placeholders(template: str) -> set[str]:
    found: set[str] = set()
    for _, name, spec, conversion in string.Formatter().parse(template):
        if name is None:
            continue
        if spec or conversion or not name.isidentifier():
            raise ValueError(f"placeholder {{{name}}} must be a bare name (no attribute, index, format or !conversion)")
        found.add(name)
    return found


def parse(data: Mapping[str, object], source: str = "remediation copy") -> Remediation:
    """Check the copy's entries (tables and keys as in remediation.toml) and return it; RemediationError if not."""
    expected = set(TEMPLATES) | LISTS | URLS
    present = {(table, key) for table, entries in data.items() if isinstance(entries, dict) for key in entries}
    problems = [f"[{t}] is not a table" for t, entries in data.items() if not isinstance(entries, dict)]
    problems += [f"[{t}] {k} is missing" for t, k in sorted(expected - present)]
    problems += [f"[{t}] {k} is not an entry the bot knows (misspelt?)" for t, k in sorted(present - expected)]
    texts: dict[tuple[str, str], str] = {}
    lists: dict[tuple[str, str], tuple[str, ...]] = {}
    for table, key in sorted(expected & present):
        value = data[table][key]  # type: ignore[index]
        where = f"[{table}] {key}"
        if (table, key) in LISTS:
            if not isinstance(value, list) or not value or not all(isinstance(v, str) and v.strip() for v in value):
                problems.append(f"{where} must be a list of non-empty strings")
                continue
            try:
                bad = sorted(set().union(*(_placeholders(v) for v in value)))
            except ValueError as exc:
                problems.append(f"{where}: {exc}")
                continue
            if bad:
                problems.append(f"{where} takes no placeholder, found {{{bad[0]}}}")
                continue
            lists[(table, key)] = tuple(v.format() for v in value)
        elif not isinstance(value, str) or not value.strip():
            problems.append(f"{where} must be a non-empty string")
        elif (table, key) in URLS:
            if not _URL.fullmatch(value):
                problems.append(f"{where} must be an https URL, got {value!r}")
            texts[(table, key)] = value
        else:
            allowed = TEMPLATES[(table, key)]
            try:
                unknown = sorted(_placeholders(value) - allowed)
                if not unknown:
                    value.format(**dict.fromkeys(allowed, "x"))
            except (ValueError, IndexError, KeyError) as exc:
                problems.append(f"{where}: {exc}")
                continue
            if unknown:
                takes = ", ".join(f"{{{n}}}" for n in sorted(allowed)) or "none"
                problems.append(f"{where}: unknown placeholder {{{unknown[0]}}} (it takes: {takes})")
                continue
            texts[(table, key)] = value
    if problems:
        raise RemediationError(f"{source} is invalid: " + "; ".join(problems))
    return Remediation(texts=texts, lists=lists)


def load(path: Path = FILE) -> Remediation:
    """Read and check a remediation copy file; RemediationError (naming the file) when missing or invalid."""
    try:
        with path.open("rb") as file:
            data = tomllib.load(file)
    except OSError as exc:
        raise RemediationError(f"remediation copy {path} cannot be read: {exc.strerror or exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise RemediationError(f"remediation copy {path} is not valid TOML: {exc}") from exc
    return parse(data, f"remediation copy {path}")


_current = load()  # at import, i.e. at startup: a missing or invalid file stops the bot here


def current() -> Remediation:
    """The remediation copy in force (read once from remediation.toml)."""
    return _current


def use(copy: Remediation) -> Remediation:
    """Put `copy` in force (e.g. `use(load(path))`); returns the one it replaces."""
    global _current
    previous, _current = _current, copy
    return previous


def partition_of(arn: str) -> str:
    """The partition of an ARN (`aws`, `aws-us-gov`, `aws-cn`), `aws` when it has none."""
    parts = arn.split(":")
    return parts[1] if len(parts) > 1 and parts[1] else "aws"


def signin_url(account_id: str, alias: str | None, partition: str = "aws") -> str | None:
    """The account's console sign-in URL (None outside the standard partitions or for a malformed id)."""
    host = SIGNIN_HOSTS.get(partition)
    if host is None:
        return None
    if alias and _ACCOUNT_ALIAS.fullmatch(alias):
        return f"https://{alias}.{host}/console"
    return f"https://{account_id}.{host}/console" if _ACCOUNT_ID.fullmatch(account_id) else None


def mfa_serial(account_id: str, user_name: str, arn: str) -> str:
    """The ARN of the virtual MFA device named after the IAM user (the CLI steps create it so)."""
    return f"arn:{partition_of(arn)}:iam::{account_id}:mfa/{user_name}"
