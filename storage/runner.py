"""Who runs a plan: an identity of the current process, and whether such a process is still alive.

A plan moved to RUNNING records `current_runner()` in `plans.runner`. At start-up
`Repository.recover_interrupted()` marks INTERRUPTED only the RUNNING plans whose runner is dead, so a
second process (`sstp-bot check` while the bot or `sstp-bot fix` runs a plan) leaves a live fix alone.

The identity is a line of `key=value` fields, e.g.
`host=vpnbot01 pid=4242 start=387209 boot=a9a2babf-... pidns=4026531836`:

- `host`: the host name (percent-encoded, so it never holds a space);
- `pid`: the process id;
- Linux only: `start`, the process start time (field 22 of `/proc/<pid>/stat`, clock ticks since
  boot), `boot`, the kernel's boot id, and `pidns`, the pid namespace; together they tell a reused
  pid (another process, after a restart or a reboot) from the process that started the plan.

Elsewhere the identity is host and pid only (a reused pid then looks alive: the plan stays RUNNING
until that process is gone too).
"""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path
from urllib.parse import quote, unquote

_PROC = Path("/proc")
_DEAD_STATES = frozenset("ZXx")  # zombie or dead: the process has exited, only its entry remains


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="ascii", errors="replace").strip()
    except OSError:
        return None


def _proc_stat(pid: int, proc: Path = _PROC) -> tuple[str, str] | None:
    """(state, start time in clock ticks) of a Linux process, or None when it does not exist."""
    raw = _read(proc / str(pid) / "stat")
    if raw is None:
        return None
    # "pid (comm) state ppid ...": comm may hold spaces and parentheses, so split after the last ')'.
    rest = raw.rpartition(")")[2].split()
    if len(rest) < 20:  # fields 3..22
        return None
    return rest[0], rest[19]


def _boot_id(proc: Path = _PROC) -> str | None:
    return _read(proc / "sys" / "kernel" / "random" / "boot_id")


def _pid_namespace(proc: Path = _PROC) -> str | None:
    try:
        link = os.readlink(proc / "self" / "ns" / "pid")  # "pid:[4026531836]"
    except OSError:
        return None
    return link.partition("[")[2].rstrip("]") or None


def _host() -> str:
    return quote(socket.gethostname(), safe="")


def current_runner() -> str:
    """The identity of this process, as stored in `plans.runner`."""
    pid = os.getpid()
    fields = {"host": _host(), "pid": str(pid)}
    if sys.platform.startswith("linux"):
        stat = _proc_stat(pid)
        boot = _boot_id()
        namespace = _pid_namespace()
        if stat is not None:
            fields["start"] = stat[1]
        if boot:
            fields["boot"] = boot
        if namespace:
            fields["pidns"] = namespace
    return " ".join(f"{key}={value}" for key, value in fields.items())


def parse_runner(runner: str) -> dict[str, str] | None:
    """The fields of a runner identity, or None when it is not one (no host, no positive pid)."""
    fields: dict[str, str] = {}
    for part in runner.split():
        key, sep, value = part.partition("=")
        if not sep or not value:
            return None
        fields[key] = value
    if "host" not in fields or not fields.get("pid", "").isdigit() or int(fields["pid"]) <= 0:
        return None
    return fields


def describe_runner(runner: str) -> str:
    """`pid 4242 on vpnbot01` (for audit reasons and logs); the raw value when it does not parse."""
    fields = parse_runner(runner)
    if fields is None:
        return runner
    return f"pid {fields['pid']} on {unquote(fields['host'])}"


def runner_is_dead(runner: str) -> bool | None:
    """Is the process that `runner` names gone?

    True: same host, and that process no longer exists, has exited (zombie), or the pid now belongs to
    another process (different start time, or the host rebooted since). False: it is alive. None:
    cannot tell (another host, another pid namespace, a value that is not an identity, or no way to
    look at processes here).
    """
    fields = parse_runner(runner)
    if fields is None or fields["host"] != _host():
        return None
    pid = int(fields["pid"])
    if sys.platform.startswith("linux"):
        return _linux_is_dead(pid, fields)
    alive = _pid_alive(pid)
    return None if alive is None else not alive


def _linux_is_dead(pid: int, fields: dict[str, str]) -> bool | None:
    recorded_ns = fields.get("pidns")
    if recorded_ns is not None and recorded_ns != _pid_namespace():
        return None  # another container on this kernel: its pids are not ours to look at
    recorded_boot = fields.get("boot")
    if recorded_boot is not None:
        boot = _boot_id()
        if boot is None:
            return None
        if boot != recorded_boot:
            return True  # the host rebooted since: every process of that boot is gone
    stat = _proc_stat(pid)
    if stat is None:
        if not _PROC.joinpath("self").exists():
            return None  # no /proc here: cannot look
        return True
    state, start = stat
    if state in _DEAD_STATES:
        return True
    recorded_start = fields.get("start")
    return recorded_start is not None and recorded_start != start  # True: the pid was reused


def _pid_alive(pid: int) -> bool | None:
    """Whether a process with that pid exists (non-Linux systems), None when it cannot be told."""
    if sys.platform == "win32":
        return _windows_pid_alive(pid)
    try:
        os.kill(pid, 0)  # signal 0: existence and permission check only, nothing is sent
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, belongs to another user
    except OSError:
        return None
    return True


if sys.platform == "win32":
    import ctypes
    from ctypes import wintypes

    def _windows_pid_alive(pid: int) -> bool | None:
        # os.kill(pid, 0) would terminate the process on Windows: ask the kernel instead.
        kernel32 = ctypes.WinDLL("kernel32", use_last_error=True)
        kernel32.OpenProcess.argtypes = [wintypes.DWORD, wintypes.BOOL, wintypes.DWORD]
        kernel32.OpenProcess.restype = wintypes.HANDLE
        kernel32.GetExitCodeProcess.argtypes = [wintypes.HANDLE, ctypes.POINTER(wintypes.DWORD)]
        kernel32.GetExitCodeProcess.restype = wintypes.BOOL
        kernel32.CloseHandle.argtypes = [wintypes.HANDLE]
        kernel32.CloseHandle.restype = wintypes.BOOL
        handle = kernel32.OpenProcess(0x1000, False, pid)  # PROCESS_QUERY_LIMITED_INFORMATION
        if not handle:
            error = ctypes.get_last_error()
            if error == 87:  # ERROR_INVALID_PARAMETER: no such process
                return False
            if error == 5:  # ERROR_ACCESS_DENIED: it exists
                return True
            return None
        try:
            code = wintypes.DWORD()
            if not kernel32.GetExitCodeProcess(handle, ctypes.byref(code)):
                return None
            return code.value == 259  # STILL_ACTIVE
        finally:
            kernel32.CloseHandle(handle)
