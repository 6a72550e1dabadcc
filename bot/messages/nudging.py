"""The answers to admins about nudges: a DM sent, skipped (cooldown), failed or of unknown delivery; "Nudge all"."""

from __future__ import annotations

from collections.abc import Sequence

from bot.messages.text import MAX_SECTION_CHARS, code, escape, mention, plural, truncate


def nudge_sent_text(slack_user_id: str, users: Sequence[tuple[str, str]]) -> str:
    """A nudge went: to whom, about which IAM users ((user_name, account) pairs)."""
    names = ", ".join(f"{code(name)} in {escape(account)}" for name, account in users)
    return truncate(f":incoming_envelope: DM sent to {mention(slack_user_id)} about {names}.", MAX_SECTION_CHARS)


def nudge_skipped_text(
    slack_user_id: str, last_at: str, last_by: str, cooldown_hours: int, delivery_unknown: bool = False
) -> str:
    """A nudge was skipped: the person was nudged within the cooldown (when, by whom, maybe delivery unknown)."""
    by = "the scheduler" if last_by in ("", "scheduler") else mention(last_by)
    unknown = " (delivery unknown: Slack's answer to that DM was lost)" if delivery_unknown else ""
    return (
        f":hourglass: Skipped: {mention(slack_user_id)} was last nudged at {escape(last_at)} by {by}{unknown}; "
        f"one DM per person every {plural(cooldown_hours, 'hour')}."
    )


def nudge_unknown_text(slack_user_id: str, error: str, cooldown_hours: int) -> str:
    """A DM may have gone but Slack's answer was lost: recorded as delivery unknown, never sent twice."""
    return (
        f":grey_question: The DM to {mention(slack_user_id)} may have gone, but Slack's answer was lost "
        f"({escape(error)}). It is recorded as *delivery unknown*; no second DM goes within "
        f"{plural(cooldown_hours, 'hour')}."
    )


def nudge_failed_text(slack_user_id: str, error: str) -> str:
    """A DM could not go after the retries; recorded as failed."""
    return (
        f":warning: The DM to {mention(slack_user_id)} could not be sent ({escape(error)}); it is recorded as failed."
    )


def nudge_all_queued_text(people: int, users: int, no_person: Sequence[str], seconds_per_dm: float) -> str:
    """ "Nudge all" was queued: how many, how long, and who could not be matched to a Slack person."""
    if not people:
        text = "Nobody to nudge: no violator has a Slack person."
    else:
        minutes = max(1, round(people * seconds_per_dm / 60))
        text = (
            f":outbox_tray: Queued {plural(people, 'DM')} ({plural(users, 'IAM user')}); they go out at Slack's "
            f"pace, about {minutes} min. People nudged within the cooldown are skipped."
        )
    if no_person:
        names = escape(", ".join(no_person))
        text += f"\nNo Slack person found for {names}: link them with `/mfa-check link NAME @person`."
    return truncate(text, MAX_SECTION_CHARS)


def nudge_batch_done_text(sent: int, skipped: int, failed: int, unknown: int = 0) -> str:
    """The summary of a finished "Nudge all"."""
    text = f"Nudge all finished: {sent} sent, {skipped} skipped (cooldown), {failed} failed"
    return text + (f", {unknown} delivery unknown." if unknown else ".")
