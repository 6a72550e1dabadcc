"""Slack listeners, one module per surface; `register(app)` wires them all (Bolt starter template layout)."""

from __future__ import annotations

from slack_bolt import App

from handlers import actions, commands, home


def register(app: App) -> None:
    """Register every listener module's listeners on `app`."""
    commands.register(app)
    actions.register(app)
    home.register(app)
