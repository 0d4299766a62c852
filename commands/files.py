"""Writing the files the bot produces for its users (saved snapshots, charts, the JEA endpoint)."""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
from pathlib import Path

_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)


def write_file(path: Path, data: bytes) -> None:
    """Write `data` to `path` like `open(path, "wb")` (a new file gets 0666 less the umask, an existing
    one keeps its mode; a device or pipe such as /dev/stdout is written to), except when `path` is a
    symbolic link: then the link is replaced by the file, never written through, so a link planted in
    a shared folder cannot point the bot's output at another file."""
    if not _NOFOLLOW and path.is_symlink():  # no O_NOFOLLOW here (Windows): look first
        _replace(path, data)
        return
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | _NOFOLLOW, 0o666)
    except OSError as exc:
        if exc.errno != errno.ELOOP:
            raise
        _replace(path, data)  # O_NOFOLLOW met a link
        return
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)


def _replace(path: Path, data: bytes) -> None:
    """A new file in the same folder, renamed over the link."""
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW, 0o666)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
