"""sstp-bot: the Slack side, the CLI, the use cases shared by both, and configuration."""

__version__ = "0.2.0"
