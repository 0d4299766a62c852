"""The lab: emulated RRAS servers and the test PKI behind their certificates.

`from commands.lab import Lab` works without importing the endpoint stack for `commands.lab.pki` users.
"""

from __future__ import annotations

from typing import Any

__all__ = ["Lab"]


def __getattr__(name: str) -> Any:
    if name == "Lab":
        from commands.lab.lab import Lab

        return Lab
    raise AttributeError(name)
