"""`python -m bot [serve|check|digest|migrate]`: the command line (the imperative shell)."""

from __future__ import annotations

import argparse
import gc
import logging
import sys
import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

from dotenv import load_dotenv

from bot.config import Config, ConfigError, load_config
from bot.formats import FORMATS
from bot.report import EXIT_ERROR

if TYPE_CHECKING:
    from bot.store import Store

logger = logging.getLogger("bot")


class UsageError(Exception):
    """The command line itself is wrong."""


class _Parser(argparse.ArgumentParser):
    """argparse that reports a bad command line in one line (exit 2), not a usage block."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (try: python -m bot --help)")


def build_parser() -> argparse.ArgumentParser:
    """The command-line grammar."""
    parser = _Parser(prog="python -m bot", description="Keep AWS console sign-ins behind MFA, from Slack.")
    commands = parser.add_subparsers(dest="command", parser_class=_Parser)
    commands.add_parser("serve", help="run the Slack bot and its scheduler (the default)")
    check = commands.add_parser("check", help="run the audit once and print it (exit 0 clean, 1 violations, 2 error)")
    check.add_argument("--json", action="store_true", help="print the contract's JSON document (= --format json)")
    check.add_argument(
        "--format",
        choices=FORMATS,
        help="text (default), json, asff (Security Hub findings), ocsf (Compliance Finding events, one per line), csv",
    )
    check.add_argument("--demo", action="store_true", help="audit a seeded local IAM (moto) instead of AWS")
    commands.add_parser("digest", help="post one digest now to DIGEST_CHANNEL, then exit")
    commands.add_parser("migrate", help="apply pending database migrations, then exit")
    return parser


def output_format(args: argparse.Namespace) -> str:
    """The one output format the command line asks for (`--json` is `--format json`)."""
    if args.json and args.format not in (None, "json"):
        raise UsageError(f"--json and --format {args.format} disagree: give one of them")
    return "json" if args.json else args.format or "text"


def render(result, output: str, config: Config, region: str | None) -> str:  # result: bot.models.AuditResult
    """The audit in the requested format."""
    from bot import formats, report

    scope = config.mfa_scope
    if output == "json":
        return report.to_json(result)
    if output == "asff":
        return formats.to_asff(result, region or "us-east-1", scope)
    if output == "ocsf":
        return formats.to_ocsf(result, scope)
    if output == "csv":
        return formats.to_csv(result).rstrip("\r\n")
    return report.to_text(result)


def cmd_check(config: Config, output: str, demo: bool) -> int:
    """Run the audit once and print it; the exit code says clean, violations or error.

    The store supplies exemptions granted from Slack and links, and keeps the scan as history;
    `--demo` uses no store at all. With a Slack token, each user's Slack person is resolved.
    """
    from bot import report, service

    # What the imports built lives as long as the process: out of every later collection's way.
    gc.freeze()
    if demo:
        from bot.demo import DEMO_REGION, demo_config, demo_environment, demo_missing

        missing = demo_missing()
        if missing:
            print(f"error: {missing}", file=sys.stderr)
            return EXIT_ERROR

        region: str | None = DEMO_REGION
        with demo_environment() as endpoint:
            result = service.run_recorded_audit(demo_config(config, endpoint), None)
        links: dict[str, str] = {}
    else:
        with store_opened_meanwhile(config.database_url) as store:
            result = service.run_recorded_audit(config, store)
            links = store.result().links()
        region = service.default_region()
    if config.slack_bot_token and not demo:
        from slack_sdk.errors import SlackApiError, SlackRequestError

        try:
            result = slack_identities(config).annotate(result, links)
        except (SlackApiError, SlackRequestError, OSError) as exc:
            reason = exc.response.get("error") if isinstance(exc, SlackApiError) else type(exc).__name__
            print(f"warning: Slack people not resolved ({reason}); slack_user_id left empty", file=sys.stderr)
    print(render(result, output, config, region))
    for account in result.errors:
        print(f"error: account {account.label}: {account.error}", file=sys.stderr)
    for account in result.accounts:
        if account.security_hub_error:
            print(f"warning: account {account.label}: {account.security_hub_error}", file=sys.stderr)
    return report.exit_code(result)


def _store_error() -> type[Exception]:
    """bot.store's StoreError, imported (with SQLAlchemy) only when asked for."""
    from bot.store import StoreError

    return StoreError


class OpeningStore:
    """The store opened (SQLAlchemy imported, the schema checked or migrated) in a thread of its own,
    from `start()`: `check` calls it once the AWS reads are on their way, so that CPU runs while they
    wait on the network. `result()` waits for it (starting it if nobody did)."""

    def __init__(self, url: str) -> None:
        self._url = url
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="store-open")
        self._lock = threading.Lock()
        self._opening: Future[Store] | None = None

    def start(self) -> None:
        """Begin opening the store (once)."""
        with self._lock:
            if self._opening is None:
                self._opening = self._pool.submit(self._open)

    def _open(self) -> Store:
        from bot.store import Store

        return Store.open(self._url)

    def result(self) -> Store:
        """The open store; raises what opening it raised."""
        self.start()
        assert self._opening is not None
        return self._opening.result()

    def close(self) -> None:
        """Close the store if it was opened (waiting for it if it is opening)."""
        with self._lock:
            opening = self._opening
        if opening is not None and opening.exception() is None:
            opening.result().close()
        self._pool.shutdown()


@contextmanager
def store_opened_meanwhile(url: str) -> Iterator[OpeningStore]:
    """An `OpeningStore` for `url`, closed on exit."""
    store = OpeningStore(url)
    try:
        yield store
    finally:
        store.close()


def slack_identities(config: Config):  # -> bot.identity.IdentityChain
    """The identity chain over one cached Slack directory (users.list)."""
    from bot.identity import IdentityChain
    from bot.slack import make_web_client

    return IdentityChain.from_config(config, make_web_client(config))


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the process exit code."""
    # .env fills in what the environment lacks, for boto3's own chain (AWS_PROFILE, ...) too.
    load_dotenv(Path.cwd() / ".env", override=False)
    try:
        args = build_parser().parse_args(argv)
        output = output_format(args) if args.command == "check" else "text"
        config = load_config()
        if config.remediation_file:  # a team's own wording of the steps, checked before anything runs
            from bot.messages.remediation import load, use

            use(load(Path(config.remediation_file)))
    except (UsageError, ConfigError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    command = args.command or "serve"
    # `check` speaks through its report and one error line per account; the bot logs.
    level = logging.ERROR if command == "check" else logging.INFO
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from bot.startup import quiet_libraries

    quiet_libraries(level)
    try:
        if command == "check":
            return cmd_check(config, output, args.demo)
        if command == "migrate":
            from bot.store import migrate

            migrate(config.database_url)
            print("database is at the latest schema")
            return 0
        if command == "serve":
            from bot.server import serve

            return serve(config)
        if command == "digest":
            from bot.services import post_digest_now
            from bot.slack import check_tokens

            config.require("SLACK_BOT_TOKEN", "DIGEST_CHANNEL")
            check_tokens(config)
            return post_digest_now(config)
    except (ConfigError, _store_error()) as exc:  # evaluated only when something was raised
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return 130
    raise AssertionError(f"unhandled command {command}")


def run() -> NoReturn:
    """`python -m bot`."""
    code = main()
    # The process is ending: spare the interpreter's last collection over every object (a few
    # hundred milliseconds after a `check`), the memory goes back to the OS either way.
    gc.freeze()
    sys.exit(code)
