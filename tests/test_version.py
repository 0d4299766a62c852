"""One version: what `--version` prints, the installed distribution, and the JEA module's ModuleVersion."""

from __future__ import annotations

import importlib.metadata

from bot import __version__
from commands.jea import module_version
from commands.version import bot_version, is_bot_module


def test_the_package_the_cli_and_the_endpoint_agree() -> None:
    assert importlib.metadata.version("sstp-bot") == __version__ == bot_version()
    assert is_bot_module(module_version())  # what `endpoint export` writes is what checks accept
    assert not is_bot_module("0.0.1")
