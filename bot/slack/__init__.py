"""The Slack adapter: parse `/sstp`, authorise, call a use case of `bot.service`, render Block Kit.

Thin by design: `grammar` parses, `auth` decides who may do what, `app` wires bolt listeners to
the service, `blocks` renders, `messages` holds every user-facing text, `server` runs the bot in
Socket Mode or behind waitress in HTTP mode.
"""

from __future__ import annotations

from bot.slack.app import create_app

__all__ = ["create_app"]
