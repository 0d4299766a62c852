"""`python -m bot` is the same as the `sstp-bot` command."""

from bot.cli import main

raise SystemExit(main())
