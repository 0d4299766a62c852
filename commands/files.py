"""Writing the files the bot produces for its users (saved snapshots, charts, the JEA endpoint)."""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path


def write_file(path: Path, data: bytes) -> None:
    """Write `path` whole: to a new file in the same folder, then renamed over `path`. A symbolic
    link (or a hard link) at `path` is replaced, never written through, so a link planted in a shared
    folder cannot point the bot's output at another file; and no reader sees half a file. The new
    file gets the usual permissions (0666 less the umask), like a plain `open(path, "w")`."""
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o666)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
