"""Re-check: confirm IAM users' MFA live (GetLoginProfile + ListMFADevices), not from the credential report.

The "I've set it up – re-check" button re-checks one IAM user in its own account (through
AWS_ROLE_NAME for member accounts, as the audit does). Nothing in the button's payload is trusted
but the IAM user it names: the store must know an open violation episode of that account and user,
and only the Slack person the identity chain links to that IAM user, or an admin, may press it.
Fixed (an MFA device, or no console password any more, or the user is gone): the violation episode
is closed, the digest row shows it, and the DM the bot sent (its channel and ts from the store) is
re-rendered from the bot's own data with the fixed IAM users thanked. Still missing: the person is
told exactly what (no device enabled, or a virtual device that was created but never enabled).

The scheduled re-check (every RECHECK_INTERVAL_MINUTES) does the same for every open episode.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from bot import aws, service
from bot.buttons import user_value
from bot.messages.personal import dm_after_recheck, nudge_dm, recheck_missing, recheck_thanks
from bot.messages.text import code, escape
from bot.models import LiveState, violation_finding
from bot.slack import SLACK_ERRORS, slack_error
from bot.store import SCHEDULER, Episode

if TYPE_CHECKING:
    from bot.edges import Edges

logger = logging.getLogger(__name__)

REFUSAL = ":no_entry: Only the person this reminder is for, or an MFA-bot admin, can re-check it (while it is open)."


def verdict(state: LiveState, pending_virtual: bool = False, active_keys: int = 0) -> tuple[bool, str]:
    """(fixed?, why): the rule applied to a live state, in words for the person. Pure.

    `active_keys`: the user's active access keys, counted only with MFA_SCOPE=all (else 0).
    """
    if not state.exists:
        return True, "the IAM user no longer exists"
    if state.mfa_devices:
        kinds = ", ".join(sorted({d.type for d in state.mfa_devices}))
        return True, f"an MFA device is enabled ({kinds})"
    if not state.console_access and active_keys:
        if pending_virtual:
            return False, (
                "it has an active access key, and its virtual MFA device was created but never enabled. Finish "
                "it with `aws iam enable-mfa-device` and two consecutive codes, or delete the access key."
            )
        return False, "it has an active access key and no MFA device (or move the workload to a role)."
    if not state.console_access:
        return True, "it has no console password any more"
    if pending_virtual:
        return False, (
            "a virtual MFA device was created for it but never enabled. Finish it: in the console choose "
            "*Assign MFA device* again, or run `aws iam enable-mfa-device` with two consecutive codes."
        )
    return False, "no MFA device is enabled, and it has a console password."


def keys_in_scope(iam: Any, user_name: str, state: LiveState, scope: str) -> int:
    """Active access keys that matter to the verdict: counted (ListAccessKeys) only with MFA_SCOPE=all,
    for a user who has neither a console password nor an MFA device."""
    if scope != "all" or not state.exists or state.console_access or state.mfa_devices:
        return 0
    return aws.active_access_keys(iam, user_name)


def pending_virtual_device(iam: Any, user_name: str) -> bool:
    """True when an unassigned virtual MFA device carries the user's name (created, never enabled)."""
    paginator = iam.get_paginator("list_virtual_mfa_devices")
    for page in paginator.paginate(AssignmentStatus="Unassigned", PaginationConfig={"PageSize": 1000}):
        for device in page["VirtualMFADevices"]:
            if device.get("SerialNumber", "").rsplit("/", 1)[-1] == user_name:
                return True
    return False


@dataclass(frozen=True)
class RecheckAnswer:
    """The result of one button press: refused, fixed (thanks), missing (what), or error."""

    outcome: str  # "refused" | "no_episode" | "fixed" | "still_missing" | "error"
    text: str
    arn: str | None = None
    dm_updated: bool = False  # fixed: the DM the bot sent was updated in place


@dataclass(frozen=True)
class RecheckSummary:
    """One scheduled re-check of the open episodes."""

    checked: int = 0
    fixed: tuple[str, ...] = ()
    failed_accounts: tuple[str, ...] = ()


class Rechecker:
    """Live re-checks for the button and the schedule; AWS sessions come from `session_factory`."""

    def __init__(
        self,
        services: Edges,
        session_factory: Callable[[], aws.AwsSession] = aws.make_session,
    ) -> None:
        self.services = services
        self.session_factory = session_factory

    def _label(self, account_id: str) -> str:
        alias = self.services.aliases.get(account_id)
        return f"{alias} ({account_id})" if alias else account_id

    def _targets(self) -> tuple[aws.AwsSession, dict[str, service.AccountTarget], str]:
        base = self.session_factory()
        targets, partition = service.account_targets(self.services.config, base)
        return base, {t.account_id: t for t in targets}, partition

    def _open_episode(self, account_id: str, user_name: str) -> Episode | None:
        return next((e for e in self.services.store.open_episodes(account_id) if e.user_name == user_name), None)

    def _person(self, iam: Any | None, episode: Episode) -> str | None:
        """The Slack person of an IAM user through the identity chain (a stored link, else its tags read live).

        Without an IAM client (the account cannot be reached) only a stored link can say.
        """
        links = self.services.store.links()
        if episode.arn in links:
            return links[episode.arn]
        if iam is None:
            return None
        try:
            tags = aws.user_tags(iam, episode.user_name)
        except (ClientError, BotoCoreError) as exc:
            logger.warning("re-check: the tags of an IAM user could not be read (%s)", aws.describe_error(exc))
            return None
        return self.services.identity.resolve(violation_finding(episode.arn, tags), links)

    def _refuse(self, clicker: str) -> RecheckAnswer:
        self.services.record(clicker or "unknown", "refused:recheck", None, None, outcome="refused")
        return RecheckAnswer("refused", REFUSAL)

    def recheck(self, clicker: str, account_id: str, user_name: str) -> RecheckAnswer:
        """The button: an open episode the store knows, the clicker authorised, the user checked live.

        Order matters: the store must know an open violation episode of that account and user
        (a forged value re-checks nothing), then the role check, and only then anything about
        the account (an unknown account is answered to its person or an admin, never before).
        Fixed: the episode is closed, the digest row and the DM (from the store) are updated.
        """
        services = self.services
        is_admin = bool(clicker) and self.services.roles.is_admin(clicker)
        episode = self._open_episode(account_id, user_name)
        if episode is None:
            if not is_admin:
                return self._refuse(clicker)
            services.record(clicker, "recheck", f"{account_id}:{user_name}", "no open violation", outcome="noop")
            text = (
                f"No open MFA violation of {code(user_name)} in account {escape(account_id)} "
                "is known: nothing was re-checked."
            )
            return RecheckAnswer("no_episode", text)
        arn = episode.arn
        iam, target, error = None, None, None
        try:
            base, targets, _ = self._targets()
            target = targets.get(account_id)
            iam = service.iam_client(services.config, base, target) if target is not None else None
        except (service.TargetsError, ClientError, BotoCoreError) as exc:
            error = str(exc) if isinstance(exc, service.TargetsError) else aws.describe_error(exc)
        if not is_admin and self._person(iam, episode) != clicker:
            return self._refuse(clicker)
        if error is None and target is None:
            services.record(clicker, "recheck", arn, "account not audited", outcome="error")
            text = f"Account {escape(account_id)} is not audited by this bot: nothing was checked."
            return RecheckAnswer("error", text, arn)
        try:
            if error is not None:
                raise service.TargetsError(error)
            state = aws.live_state(iam, user_name)
            keys = keys_in_scope(iam, user_name, state, services.config.mfa_scope)
            fixed, why = verdict(state, active_keys=keys)
            if not fixed:
                fixed, why = verdict(state, pending_virtual_device(iam, user_name), keys)
        except (service.TargetsError, ClientError, BotoCoreError) as exc:
            error = str(exc) if isinstance(exc, service.TargetsError) else aws.describe_error(exc)
            logger.warning("re-check failed: %s", error)
            services.record(clicker, "recheck", arn, error, outcome="error")
            text = f":warning: I could not check just now ({escape(error)}). Try again in a minute."
            return RecheckAnswer("error", text, arn)
        label = self._label(account_id)
        if not fixed:
            services.record(clicker, "recheck", arn, why, outcome="still_missing")
            return RecheckAnswer("still_missing", recheck_missing(user_name, label, why), arn)
        services.store.close_episode(arn, services.clock())
        services.record(clicker, "recheck", arn, why, outcome="fixed")
        self._refresh([arn])
        updated = self.update_dm(arn)
        return RecheckAnswer("fixed", recheck_thanks(user_name, label), arn, dm_updated=updated)

    def update_dm(self, arn: str) -> bool:
        """Show the re-check in the DM the bot sent about `arn`: that DM (channel and ts from the store),
        re-rendered from the bot's own data with every IAM user it covers that is no longer open thanked.

        Never from a button payload's blocks. False when no such DM is known or Slack refused the update.
        """
        services = self.services
        dm = services.store.last_dm(arn)
        if dm is None or not dm.channel or not dm.message_ts:
            return False
        users = [violation_finding(a) for a in dm.arns]
        message = nudge_dm(dm.slack_user_id, users, services.aliases, dm.sent_by)
        blocks: list[dict] = message.blocks_json()
        still_open = {e.arn for e in services.store.open_episodes()}
        for user in users:
            if user.arn not in still_open:
                thanks = recheck_thanks(user.user_name, self._label(user.account_id))
                blocks = dm_after_recheck(blocks, user_value(user.account_id, user.user_name), thanks)
        try:
            services.slack.update(dm.channel, dm.message_ts, "Thank you: MFA is on", blocks)
        except SLACK_ERRORS as exc:
            logger.warning("could not update the DM after a re-check: %s", slack_error(exc))
            return False
        return True

    def _refresh(self, arns: Iterable[str]) -> None:
        try:
            self.services.refresh_digest_rows(arns)
        except Exception:
            logger.exception("could not update the digest rows after a re-check")

    def recheck_open(self) -> RecheckSummary:
        """The schedule: check every open episode live; close (and show in the digest) the fixed ones."""
        services = self.services
        episodes = services.store.open_episodes()
        if not episodes:
            return RecheckSummary()
        by_account: dict[str, list[Episode]] = {}
        for episode in episodes:
            by_account.setdefault(episode.account_id, []).append(episode)
        try:
            base, targets, _ = self._targets()
        except (service.TargetsError, ClientError, BotoCoreError) as exc:
            logger.warning("scheduled re-check: the accounts could not be listed (%s)", exc)
            return RecheckSummary(failed_accounts=tuple(by_account))
        fixed: list[str] = []
        failed: list[str] = []
        checked = 0
        for account_id, open_here in sorted(by_account.items()):
            target = targets.get(account_id)
            if target is None:
                failed.append(account_id)
                continue
            try:
                iam = service.iam_client(services.config, base, target)
            except (ClientError, BotoCoreError) as exc:
                logger.warning("scheduled re-check of %s failed: %s", account_id, aws.describe_error(exc))
                failed.append(account_id)
                continue

            def live(episode: Episode, iam: Any = iam) -> tuple[Episode, LiveState | None, int]:
                try:
                    state = aws.live_state(iam, episode.user_name)
                    return episode, state, keys_in_scope(iam, episode.user_name, state, services.config.mfa_scope)
                except (ClientError, BotoCoreError) as exc:
                    logger.warning("scheduled re-check of one user failed: %s", aws.describe_error(exc))
                    return episode, None, 0

            workers = max(1, min(services.config.live_check_concurrency, len(open_here)))
            with ThreadPoolExecutor(workers, thread_name_prefix="recheck") as pool:
                for episode, state, keys in pool.map(live, open_here):
                    if state is None:
                        continue
                    checked += 1
                    if not verdict(state, active_keys=keys)[0]:
                        continue
                    if services.store.close_episode(episode.arn, services.clock()) is not None:
                        fixed.append(episode.arn)
        if fixed:
            self._refresh(fixed)
            updated: set[tuple[str | None, str | None]] = set()
            for arn in fixed:
                dm = services.store.last_dm(arn)
                if dm is not None and (dm.channel, dm.message_ts) not in updated:
                    updated.add((dm.channel, dm.message_ts))
                    self.update_dm(arn)
        detail = f"{checked} checked live, {len(fixed)} fixed, {len(failed)} accounts not reachable"
        services.record(SCHEDULER, "recheck_scheduled", None, detail, outcome="ok" if not failed else "partial")
        logger.info("scheduled re-check: %s", detail)
        return RecheckSummary(checked=checked, fixed=tuple(fixed), failed_accounts=tuple(failed))

    def live_client(self, account_id: str) -> tuple[Any, str] | None:
        """An IAM client for `account_id` (its role assumed for a member account) and the partition.

        None when the account is not audited by this bot. The real-time events check users through it.
        """
        base, targets, partition = self._targets()
        target = targets.get(account_id)
        return None if target is None else (service.iam_client(self.services.config, base, target), partition)
