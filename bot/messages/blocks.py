"""Shared Block Kit pieces: the rendered `Message`, verbatim mrkdwn, the one line packer, one-line answers.

Slack's limits hold for any input: 50 blocks a message, 3,000 characters a section text.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from slack_sdk.models.blocks import Block, MarkdownTextObject, SectionBlock

from bot.messages.text import MAX_FALLBACK_CHARS, MAX_LINE_CHARS, MAX_SECTION_CHARS, clean, truncate

MORE_NOTE_ROOM = 80  # characters a section keeps free for the "…and N more" line when lines may be left out


@dataclass(frozen=True)
class CsvFile:
    """A file to upload next to a message: the whole list the message could not hold."""

    filename: str
    title: str
    content: str
    rows: int


@dataclass(frozen=True)
class Message:
    """A rendered message: blocks, the plain-text fallback, and maybe a CSV file to upload."""

    text: str
    blocks: list[Block] = field(default_factory=list)
    file: CsvFile | None = None

    def blocks_json(self) -> list[dict]:
        """The blocks as Slack's JSON dicts."""
        return [block.to_dict() for block in self.blocks]


def mrkdwn(text: str) -> MarkdownTextObject:
    """A mrkdwn text object that Slack shows verbatim: URLs and names in data (tag values, reasons) are not
    turned into links or mentions; only the bot's own `<@U…>`, `<#C…>` and `<https://…>` forms are."""
    return MarkdownTextObject(text=clean(text), verbatim=True)


def pack_lines(
    title: str | None,
    lines: Sequence[str],
    max_sections: int | None = None,
    max_lines: int | None = None,
    more_note: str = "see the CSV file",
    sizes: Sequence[int] | None = None,
) -> tuple[list[SectionBlock], int]:
    """Pack `title` (if any) and the lines, in order, into sections of at most 3,000 characters.

    Returns the sections and how many lines they show. With `max_sections` or `max_lines`, lines
    that do not fit are left out and the last section ends with "…and N more (`more_note`)";
    without, every line is shown in as many sections as needed. `sizes` (one per line) lays the
    lines out by other lengths than their own, e.g. with room to grow, so that the same rows keep
    the same sections when re-rendered in place. At least one section when there is a title.
    """
    limited = max_sections is not None or max_lines is not None
    limit = MAX_SECTION_CHARS - (MORE_NOTE_ROOM if limited else 0)
    cap = len(lines) + 1 if max_sections is None else max(1, max_sections)
    texts = [truncate(line, MAX_LINE_CHARS) for line in lines[: len(lines) if max_lines is None else max(0, max_lines)]]
    sections: list[list[str]] = [[truncate(title, limit)]] if title is not None else []
    size = len(sections[0][0]) if sections else 0
    shown = 0
    for index, text in enumerate(texts):
        length = len(text) if sizes is None else sizes[index]
        if sections and size + 1 + length <= limit:
            sections[-1].append(text)
            size += 1 + length
        elif len(sections) < cap:
            sections.append([text])
            size = length
        else:
            break
        shown += 1
    hidden = len(lines) - shown
    if hidden:
        sections[-1].append(f"_…and {hidden} more ({more_note})_")
    return [SectionBlock(text=mrkdwn(truncate("\n".join(part), MAX_SECTION_CHARS))) for part in sections], shown


def text_message(text: str, fallback: str | None = None) -> Message:
    """A one-section message (answers, confirmations, refusals)."""
    return Message(
        text=truncate(fallback or text, MAX_FALLBACK_CHARS),
        blocks=[SectionBlock(text=mrkdwn(truncate(text, MAX_SECTION_CHARS)))],
    )


REFUSAL = (
    ":no_entry: Only MFA-bot admins can do that. You can run `/mfa-check me` to see your own IAM users, "
    "or `/mfa-check help`."
)


def refusal_message() -> Message:
    """The answer to a non-admin asking for an admin command (names nothing)."""
    return text_message(REFUSAL, "Only admins can do that")
