"""Pure renderers of the real-time alerts posted to ALERT_CHANNEL (default DIGEST_CHANNEL). No I/O.

Three alerts, each short, naming who (IAM user and Slack person), which account, what changed and
who did it (CloudTrail's userIdentity):
- a new violation (a console password without MFA, MFA removed, the exemption tag removed),
  with a Nudge button (the digest's `nudge` action) and what became of the DM;
- a console sign-in without MFA by a user in violation (once per episode per day), with the
  time and source IP of the sign-in;
- the exemption tag added or removed outside Slack.
"""

from __future__ import annotations

from dataclasses import dataclass

from slack_sdk.models.blocks import Block, ButtonElement, ContextBlock, MarkdownTextObject, SectionBlock

from bot import buttons
from bot.events import IamEvent
from bot.messages.blocks import Message
from bot.messages.text import MAX_BUTTON_TEXT, MAX_SECTION_CHARS, code, escape, truncate

DM_OUTCOMES = {
    "sent": "DM sent with the set-up steps",
    "skipped_cooldown": "no DM: the person was nudged within the cooldown",
    "failed": "the DM could not be sent (recorded as failed)",
    "unknown": "DM delivery unknown (Slack did not answer; not repeated within the cooldown)",
    "no_person": "no Slack person found: link one with `/mfa-check link NAME @person`",
}


@dataclass(frozen=True)
class AlertSubject:
    """Whom an alert is about: the IAM user, its account label, and its Slack person (if found)."""

    account_id: str
    user_name: str
    account_label: str
    slack_user_id: str | None = None

    @property
    def who(self) -> str:
        person = f" · <@{self.slack_user_id}>" if self.slack_user_id else ""
        return f"{code(self.user_name)} in {escape(self.account_label)}{person}"

    @property
    def button_value(self) -> str:
        return buttons.user_value(self.account_id, self.user_name)


def _by(event: IamEvent) -> str:
    return f"by {code(event.actor)}"


def _nudge_button(subject: AlertSubject) -> ButtonElement:
    return ButtonElement(
        text=truncate("Nudge", MAX_BUTTON_TEXT), action_id=buttons.NUDGE_ACTION, value=subject.button_value
    )


def _message(text: str, headline: str, context: str, button: ButtonElement | None) -> Message:
    blocks: list[Block] = [
        SectionBlock(text=MarkdownTextObject(text=truncate(headline, MAX_SECTION_CHARS)), accessory=button),
        ContextBlock(elements=[MarkdownTextObject(text=truncate(context, MAX_SECTION_CHARS))]),
    ]
    return Message(text=truncate(text, MAX_SECTION_CHARS), blocks=blocks)


def sign_in_line(event: IamEvent, when: str) -> str:
    """When and from where a console sign-in without MFA came."""
    return f"signed in to the console *without MFA* at {escape(when)} from {code(event.source_ip or 'unknown IP')}"


def violation_alert(subject: AlertSubject, event: IamEvent, when: str, dm_outcome: str) -> Message:
    """A new violation: who, which account, what changed, who did it, what became of the DM; a Nudge button."""
    if event.is_login:
        change = sign_in_line(event, when)
    else:
        change = f"{escape(event.what_changed())} {_by(event)} at {escape(when)}"
    headline = f":rotating_light: *New MFA violation* · {subject.who}\n{change}: console password, no MFA device."
    context = f"{DM_OUTCOMES.get(dm_outcome, escape(dm_outcome))} · CloudTrail event {code(event.event_id)}"
    text = f"New MFA violation: {subject.user_name} in {subject.account_label} ({event.what_changed()})"
    return _message(text, headline, context, _nudge_button(subject))


def login_alert(subject: AlertSubject, event: IamEvent, when: str, open_since: str) -> Message:
    """A console sign-in without MFA by a user in violation: its time and source IP; a Nudge button."""
    headline = f":warning: *Console sign-in without MFA* · {subject.who}\n{sign_in_line(event, when)}."
    context = (
        f"Violation open since {escape(open_since)} · one alert per violation per day · "
        f"CloudTrail event {code(event.event_id)}"
    )
    text = f"Console sign-in without MFA: {subject.user_name} in {subject.account_label} from {event.source_ip}"
    return _message(text, headline, context, _nudge_button(subject))


def exemption_alert(subject: AlertSubject, event: IamEvent, when: str, tag_key: str, change: str) -> Message:
    """The exemption tag added (with its reason) or removed outside Slack, and who did it."""
    if change == "added":
        reason = event.tags_added.get(tag_key, "").strip() or "(no reason given)"
        what = f"tag {code(tag_key)} *added* ({escape(reason)})"
    else:
        what = f"tag {code(tag_key)} *removed*"
    headline = f":label: *Exemption changed outside Slack* · {subject.who}\n{what} {_by(event)} at {escape(when)}."
    context = f"Recorded in the audit trail · CloudTrail event {code(event.event_id)}"
    text = f"Exemption tag {change} on {subject.user_name} in {subject.account_label} by {event.actor}"
    return _message(text, headline, context, None)
