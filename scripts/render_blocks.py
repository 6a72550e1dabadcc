"""Pictures of the bot's Slack surfaces for the docs, from the bot's own renderers.

    python scripts/render_blocks.py            # JSON, docs/surfaces.md and the PNGs
    python scripts/render_blocks.py --no-png   # JSON and docs/surfaces.md only (no Pillow needed)

It runs the `check --demo` audit in-process (the seeded local IAM, no AWS, no Slack), resolves
Slack people through the identity chain with a small stand-in directory, and renders three
messages exactly as the bot posts them: the daily digest, the nudge DM and the `/mfa-check` reply,
and the App Home tab (built from the demo audit as `bot/home_tab.py` builds it from the store).
It writes their Block Kit JSON to docs/blocks/<surface>.json, a Block Kit Builder link per message
to docs/surfaces.md, and a simple Slack-like PNG of each to docs/img/<surface>.png (Pillow: the
`test` extra). The PNG is a readable sketch, not a pixel-perfect copy of Slack.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import textwrap
import urllib.parse
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

BUILDER = "https://app.slack.com/block-kit-builder/#"
ADMIN_ID = "U0ADMIN01"
# The stand-in Slack directory: email -> Slack user ID (bob is found by his slack-user-id tag).
DIRECTORY = {"alice@example.com": "U0ALICE01", "erin@example.com": "U0ERIN001", "ivan@example.com": "U0IVAN001"}
NAMES = {"U0ADMIN01": "jane", "U0ALICE01": "alice", "U0BOB0001": "bob", "U0ERIN001": "erin", "U0IVAN001": "ivan"}
DM_PERSON = "U0BOB0001"
DIGEST_CHANNEL = "C0SECURITY"
CHANNELS = {DIGEST_CHANNEL: "security"}


@dataclass(frozen=True)
class Surface:
    """One message as the bot renders it."""

    name: str  # file stem: docs/blocks/<name>.json, docs/img/<name>.png
    title: str
    where: str  # where Slack shows it
    text: str  # the notification fallback
    blocks: list[dict[str, Any]]
    max_blocks: int = 50  # Slack's limit: 50 blocks a message, 100 a Home tab view


class _Directory:
    """A stand-in for the cached users.list directory (the identity chain's email lookup)."""

    def user_id_for_email(self, email: str) -> str | None:
        return DIRECTORY.get(email.strip().lower())


def demo_result() -> Any:
    """The `check --demo` audit, run in-process, with Slack people resolved by the identity chain."""
    from bot import service
    from bot.config import load_config
    from bot.demo import demo_config, demo_environment, demo_missing
    from bot.identity import IdentityChain

    missing = demo_missing()
    if missing:
        raise SystemExit(f"error: {missing}")
    config = load_config({}, dotenv_path=None)
    with demo_environment() as endpoint:
        result = service.run_recorded_audit(demo_config(config, endpoint), None)
    return IdentityChain(_Directory(), email_domain="example.com").annotate(result, {})


def build_surfaces(result: Any | None = None) -> list[Surface]:
    """The digest, the nudge DM, the `/mfa-check` reply and the App Home of the demo audit, as Block Kit."""
    from bot.digest import build_view
    from bot.home import home_view
    from bot.messages.audit import audit_message
    from bot.messages.digest import digest_parts
    from bot.messages.personal import nudge_dm

    result = result if result is not None else demo_result()
    now = result.generated_at
    top = digest_parts(build_view(result, {}, now, "UTC"))[0]
    aliases = {a.account_id: a.alias for a in result.accounts}
    mine = [u for u in result.violations if u.slack_user_id == DM_PERSON]
    dm = nudge_dm(DM_PERSON, mine, aliases, requested_by=ADMIN_ID)
    reply = audit_message(result)
    return [
        Surface(
            "digest",
            "The daily digest",
            "posted to `DIGEST_CHANNEL`",
            top.text,
            [b.to_dict() for b in top.blocks],
        ),
        Surface("dm", "The nudge DM", "a direct message to the person", dm.text, dm.blocks_json()),
        Surface("mfa-check", "The /mfa-check reply", "visible to the admin who asked", reply.text, reply.blocks_json()),
        Surface(
            "app-home",
            "The App Home tab",
            "Home tab, as an admin with an IAM user of their own sees it",
            "",
            home_view(home_page(result)).to_dict()["blocks"],
            max_blocks=100,
        ),
    ]


def home_page(result: Any) -> Any:
    """The Home as `bot/home_tab.py` builds it from the store, here from the demo audit (just recorded)."""
    from bot.home import AccountLine, AdminHome, HomePage, OwnUser

    now = result.generated_at
    labels = {a.account_id: a.label for a in result.accounts}
    own = tuple(
        OwnUser(u, labels[u.account_id], days_open=0, episode_open=u.status == "violation")
        for a in result.accounts
        for u in a.users
        if u.slack_user_id == DM_PERSON
    )
    accounts = tuple(AccountLine.of(a, now) for a in result.accounts)
    admin = AdminHome(accounts=accounts, last_audit_at=now, digest_channel=DIGEST_CHANNEL)
    return HomePage(DM_PERSON, now, now, own, tuple(labels.values()), admin)


def builder_url(blocks: Sequence[Mapping[str, Any]], home: bool = False) -> str:
    """A Block Kit Builder link that opens the message (or, `home`, the Home tab view)."""
    payload: dict[str, Any] = {"type": "home", "blocks": list(blocks)} if home else {"blocks": list(blocks)}
    return BUILDER + urllib.parse.quote(json.dumps(payload, separators=(",", ":")), safe="")


def surfaces_markdown(surfaces: Sequence[Surface]) -> str:
    """docs/surfaces.md: each surface with its picture, its JSON and its Block Kit Builder link."""
    lines = [
        "# What the bot posts in Slack",
        "",
        "Generated by `python scripts/render_blocks.py` from the bot's own renderers and the",
        "`check --demo` audit (Slack people resolved by a stand-in directory). Do not edit by hand.",
        "The pictures are simple sketches drawn with Pillow; open a Block Kit Builder link to see",
        "the real thing in Slack's own preview.",
        "",
    ]
    for surface in surfaces:
        lines += [
            f"## {surface.title}",
            "",
            f"Where: {surface.where}. Blocks: {len(surface.blocks)}. "
            f"JSON: [`blocks/{surface.name}.json`](blocks/{surface.name}.json). "
            f"[Open in Block Kit Builder]({builder_url(surface.blocks, home=surface.max_blocks > 50)}).",
            "",
            f"![{surface.title}](img/{surface.name}.png)",
            "",
        ]
    return "\n".join(lines)


def write(surfaces: Sequence[Surface], docs: Path, png: bool = True) -> list[Path]:
    """Write the JSON, docs/surfaces.md and (with `png`) the pictures; the paths written."""
    written = []
    (docs / "blocks").mkdir(parents=True, exist_ok=True)
    for surface in surfaces:
        path = docs / "blocks" / f"{surface.name}.json"
        path.write_text(json.dumps({"text": surface.text, "blocks": surface.blocks}, indent=2) + "\n")
        written.append(path)
    path = docs / "surfaces.md"
    path.write_text(surfaces_markdown(surfaces))
    written.append(path)
    if png:
        (docs / "img").mkdir(parents=True, exist_ok=True)
        for surface in surfaces:
            path = docs / "img" / f"{surface.name}.png"
            render_png(surface, path)
            written.append(path)
    return written


# -- the PNG sketch (Pillow) ---------------------------------------------------------------------

WIDTH = 820
PAD = 20
GUTTER = 56  # left of the message text: the avatar
TEXT_W = WIDTH - GUTTER - PAD - 8
FONT_DIRS = ("/usr/share/fonts/truetype/dejavu", "/usr/share/fonts/dejavu", "/Library/Fonts", "C:/Windows/Fonts")
FONT_FILES = {
    "regular": "DejaVuSans.ttf",
    "bold": "DejaVuSans-Bold.ttf",
    "italic": "DejaVuSans-Oblique.ttf",
    "bold_italic": "DejaVuSans-BoldOblique.ttf",
    "mono": "DejaVuSansMono.ttf",
}
INK, GREY, LINK, CODE_INK, CODE_BG, RULE = "#1d1c1d", "#616061", "#1264a3", "#c01343", "#f6f6f6", "#dddddd"
MENTION_BG = "#e8f5fa"
# Slack emoji drawn as a coloured badge with one glyph (no emoji font needed).
EMOJI = {
    "white_check_mark": ("#2eb67d", "✓"),
    "warning": ("#ecb22e", "!"),
    "x": ("#e01e5a", "×"),
    "no_entry": ("#e01e5a", "–"),
    "rotating_light": ("#e01e5a", "!"),
    "large_yellow_circle": ("#ecb22e", " "),
    "grey_question": ("#9a9a9a", "?"),
    "alarm_clock": ("#1264a3", "◷"),
    "hourglass": ("#1264a3", "◔"),
    "hourglass_flowing_sand": ("#1264a3", "◔"),
    "incoming_envelope": ("#1264a3", "✉"),
    "outbox_tray": ("#1264a3", "↑"),
    "page_facing_up": ("#9a9a9a", "≡"),
    "thread": ("#1264a3", "↳"),
    "iam": ("#dd6b10", "i"),
}


@dataclass(frozen=True)
class Run:
    """A piece of text in one style."""

    text: str
    bold: bool = False
    italic: bool = False
    code: bool = False
    link: bool = False
    mention: bool = False
    strike: bool = False
    emoji: str | None = None


INLINE = re.compile(
    r"(?P<code>`[^`\n]+`)"
    r"|(?P<angle><[^<>\n]+>)"
    r"|(?P<emoji>:[a-z0-9_+-]+:)"
    r"|(?<![\w*])\*(?P<bold>\S(?:[^*\n]*?\S)?)\*(?![\w*])"
    r"|(?<![\w_])_(?P<italic>\S(?:[^_\n]*?\S)?)_(?![\w_])"
    r"|(?<![\w~])~(?P<strike>\S(?:[^~\n]*?\S)?)~(?![\w~])"
)


def _unescape(text: str) -> str:
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def _angle(inner: str) -> Run:
    target, _, label = inner.partition("|")
    if target.startswith("@"):
        return Run("@" + NAMES.get(target[1:], label or target[1:]), mention=True)
    if target.startswith("#"):
        return Run("#" + (label or CHANNELS.get(target[1:], target[1:])), mention=True)
    if target.startswith("!"):
        return Run(label or "@" + target[1:].split("^")[0], mention=not label)
    return Run(_unescape(label or target), link=True)


def parse_mrkdwn(text: str, bold: bool = False, italic: bool = False, strike: bool = False) -> list[Run]:
    """Slack mrkdwn -> styled runs (bold, italic, strike, code, links, mentions, emoji)."""
    runs: list[Run] = []
    pos = 0
    for match in INLINE.finditer(text):
        if match.start() > pos:
            runs.append(Run(_unescape(text[pos : match.start()]), bold, italic, strike=strike))
        kind = match.lastgroup
        value = match.group(kind or 0)
        if kind == "code":
            runs.append(Run(_unescape(value[1:-1]), bold, italic, code=True))
        elif kind == "angle":
            found = _angle(value[1:-1])
            runs.append(Run(found.text, bold, italic, link=found.link, mention=found.mention))
        elif kind == "emoji":
            name = value.strip(":")
            runs.append(Run(value, emoji=name) if name in EMOJI else Run(value, bold, italic))
        elif kind == "bold":
            runs += parse_mrkdwn(value, True, italic, strike)
        elif kind == "italic":
            runs += parse_mrkdwn(value, bold, True, strike)
        else:
            runs += parse_mrkdwn(value, bold, italic, True)
        pos = match.end()
    if pos < len(text):
        runs.append(Run(_unescape(text[pos:]), bold, italic, strike=strike))
    return runs


class Painter:
    """Lays out and draws blocks on a tall canvas, cropped at the end."""

    def __init__(self, size: int = 15) -> None:
        from PIL import Image, ImageDraw

        self.size = size
        self.image = Image.new("RGB", (WIDTH, 12000), "white")
        self.draw = ImageDraw.Draw(self.image)
        self.fonts: dict[tuple[str, int], Any] = {}
        self.y = PAD

    def font(self, style: str, size: int | None = None) -> Any:
        from PIL import ImageFont

        size = size or self.size
        key = (style, size)
        if key not in self.fonts:
            for folder in FONT_DIRS:
                path = Path(folder) / FONT_FILES[style]
                if path.is_file():
                    self.fonts[key] = ImageFont.truetype(str(path), size)
                    break
            else:
                self.fonts[key] = ImageFont.load_default(size)
        return self.fonts[key]

    def _run_font(self, run: Run, size: int) -> Any:
        if run.code:
            return self.font("mono", size - 1)
        style = "bold_italic" if run.bold and run.italic else "bold" if run.bold else "italic" if run.italic else ""
        return self.font(style or "regular", size)

    def _tokens(self, runs: Sequence[Run]) -> Iterator[tuple[str, Run]]:
        for run in runs:
            if run.emoji:
                yield run.text, run
                continue
            for piece in re.findall(r"\n|[^\S\n]+|[^\s]+", run.text):
                yield piece, run

    def text(
        self, runs: Sequence[Run], x: int, width: int, size: int | None = None, colour: str = INK, draw: bool = True
    ) -> int:
        """Wrap `runs` into `width` from (x, self.y); returns the height used (drawn when `draw`)."""
        size = size or self.size
        line_h = int(size * 1.5)
        cx, cy = x, self.y
        for piece, run in self._tokens(runs):
            if piece == "\n":
                cx, cy = x, cy + line_h
                continue
            w = size + 4 if run.emoji else int(self._run_font(run, size).getlength(piece))
            if piece.isspace():
                if cx == x:
                    continue
                if cx + w > x + width:
                    cx, cy = x, cy + line_h
                    continue
            elif cx + w > x + width and cx > x:
                cx, cy = x, cy + line_h
            while w > width and not run.emoji:  # one word longer than a line: break it
                font = self._run_font(run, size)
                cut = len(piece)
                while cut > 1 and font.getlength(piece[:cut]) > x + width - cx:
                    cut -= 1
                if draw:
                    self._piece(piece[:cut], run, cx, cy, size, colour)
                piece = piece[cut:]
                cx, cy = x, cy + line_h
                w = int(font.getlength(piece))
            if draw:
                self._piece(piece, run, cx, cy, size, colour)
            cx += w
        return cy + line_h - self.y

    def _piece(self, piece: str, run: Run, x: int, y: int, size: int, colour: str) -> None:
        if run.emoji:
            bg, glyph = EMOJI[run.emoji]
            d = size + 1
            self.draw.ellipse((x + 1, y + 2, x + 1 + d, y + 2 + d), fill=bg)
            font = self.font("bold", size - 3)
            self.draw.text((x + 1 + d / 2, y + 2 + d / 2), glyph, font=font, fill="white", anchor="mm")
            return
        font = self._run_font(run, size)
        w = font.getlength(piece)
        if run.code:
            self.draw.rectangle((x, y + 1, x + w, y + size + 5), fill=CODE_BG)
            fill = CODE_INK
        elif run.mention:
            self.draw.rectangle((x, y + 1, x + w, y + size + 5), fill=MENTION_BG)
            fill = LINK
        else:
            fill = LINK if run.link else colour
        self.draw.text((x, y + 2), piece, font=font, fill=fill)
        if run.strike:
            self.draw.line((x, y + size // 2 + 4, x + w, y + size // 2 + 4), fill=fill)

    def mrkdwn(self, text: str, x: int, width: int, size: int | None = None, colour: str = INK) -> int:
        """A mrkdwn text with its ``` code blocks; returns the height used."""
        start = self.y
        for index, chunk in enumerate(text.split("```")):
            if index % 2:
                self.code_block(chunk.strip("\n"), x, width)
            elif chunk.strip():
                self.y += self.text(parse_mrkdwn(chunk.strip("\n")), x, width, size, colour)
        used = self.y - start
        self.y = start
        return used

    def code_block(self, text: str, x: int, width: int) -> None:
        font = self.font("mono", self.size - 2)
        line_h = int((self.size - 2) * 1.45)
        chars = max(10, int((width - 16) // font.getlength("m")))
        lines = [
            wrapped
            for line in _unescape(text).split("\n")
            for wrapped in textwrap.wrap(line, chars, subsequent_indent="  ", break_on_hyphens=False) or [""]
        ]
        height = len(lines) * line_h + 14
        self.draw.rounded_rectangle((x, self.y + 4, x + width, self.y + 4 + height), 4, fill=CODE_BG, outline=RULE)
        for i, line in enumerate(lines):
            self.draw.text((x + 8, self.y + 11 + i * line_h), line, font=font, fill=INK)
        self.y += height + 10

    def button(self, element: Mapping[str, Any], x: int, y: int) -> int:
        """Draw a button; returns its width."""
        label = element.get("text", {}).get("text", "")
        font = self.font("bold", self.size - 2)
        w = int(font.getlength(label)) + 24
        style = element.get("style")
        fill, ink, outline = {
            "primary": ("#007a5a", "white", "#007a5a"),
            "danger": ("#e01e5a", "white", "#e01e5a"),
        }.get(style or "", ("white", INK, "#bbbbbb"))
        self.draw.rounded_rectangle((x, y, x + w, y + 30), 4, fill=fill, outline=outline)
        self.draw.text((x + w / 2, y + 15), label, font=font, fill=ink, anchor="mm")
        return w

    def block(self, block: Mapping[str, Any]) -> None:
        """Draw one block at the cursor and move the cursor below it."""
        kind = block.get("type")
        x = GUTTER
        if kind == "header":
            runs = [Run(block["text"]["text"], bold=True)]
            self.y += 4 + self.text(runs, x, TEXT_W, self.size + 3) + 4
        elif kind == "divider":
            self.draw.line((x, self.y + 8, x + TEXT_W, self.y + 8), fill=RULE, width=1)
            self.y += 18
        elif kind == "context":
            cx, height = x, 0
            for element in block.get("elements", []):
                text = element.get("text", "")
                runs = parse_mrkdwn(text) if element.get("type") == "mrkdwn" else [Run(text)]
                height = max(height, self.text(runs, cx, TEXT_W - (cx - x), self.size - 3, GREY))
            self.y += height + 6
        elif kind == "section":
            accessory = block.get("accessory")
            width = TEXT_W - (190 if accessory else 0)
            height = 0
            if "text" in block:
                text = block["text"]
                if text.get("type") == "mrkdwn":
                    height = self.mrkdwn(text["text"], x, width)
                else:
                    height = self.text([Run(text["text"])], x, width)
            fields = block.get("fields") or []
            for row in range(0, len(fields), 2):
                self.y += height
                height = 0
                for col, field in enumerate(fields[row : row + 2]):
                    fx = x + col * (width // 2)
                    height = max(height, self.mrkdwn(field.get("text", ""), fx, width // 2 - 12))
            if accessory and accessory.get("type") == "button":
                self.button(accessory, x + TEXT_W - self._button_width(accessory), self.y)
                height = max(height, 34)
            self.y += height + 8
        elif kind == "actions":
            cx = x
            for element in block.get("elements", []):
                if element.get("type") == "button":
                    cx += self.button(element, cx, self.y + 2) + 8
            self.y += 42
        else:
            self.y += self.text([Run(f"[{kind} block]", italic=True)], x, TEXT_W, colour=GREY) + 6

    def _button_width(self, element: Mapping[str, Any]) -> int:
        return int(self.font("bold", self.size - 2).getlength(element.get("text", {}).get("text", ""))) + 24

    def chrome(self, where: str) -> None:
        """The message's frame: the app's avatar and name, and where Slack shows it."""
        self.draw.rounded_rectangle((PAD, self.y, PAD + 36, self.y + 36), 6, fill="#232f3e")
        self.draw.text((PAD + 18, self.y + 18), "MFA", font=self.font("bold", 11), fill="#ff9900", anchor="mm")
        name = self.font("bold", self.size)
        self.draw.text((GUTTER, self.y), "MFA Bot", font=name, fill=INK)
        bx = GUTTER + int(name.getlength("MFA Bot")) + 8
        self.draw.rounded_rectangle((bx, self.y + 2, bx + 32, self.y + 18), 3, fill="#e8e8e8")
        self.draw.text((bx + 16, self.y + 10), "APP", font=self.font("bold", 10), fill=GREY, anchor="mm")
        self.draw.text(
            (bx + 42, self.y + 2), where.replace("`", ""), font=self.font("regular", self.size - 3), fill=GREY
        )
        self.y += 26

    def save(self, path: Path) -> None:
        self.image.crop((0, 0, WIDTH, self.y + PAD)).save(path, optimize=True)


def render_png(surface: Surface, path: Path) -> None:
    """A simple Slack-like picture of one message (needs Pillow)."""
    painter = Painter()
    painter.chrome(surface.where)
    for block in surface.blocks:
        painter.block(block)
    painter.save(path)


def main(argv: Sequence[str] | None = None) -> int:
    """Write docs/blocks/*.json, docs/surfaces.md and docs/img/*.png."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--no-png", action="store_true", help="skip the pictures (no Pillow needed)")
    parser.add_argument("--docs", type=Path, default=ROOT / "docs", help="where to write (default: docs/)")
    args = parser.parse_args(argv)
    for path in write(build_surfaces(), args.docs, png=not args.no_png):
        print(path.relative_to(args.docs.parent) if path.is_relative_to(args.docs.parent) else path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
