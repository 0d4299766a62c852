"""Client-side cost of a check (issue 12): what the sweep benchmark's savings rest on stays correct."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from pypsrp.serializer import Serializer

from commands.lab.lab import LAB_PASSWORD, Lab
from commands.psrp import RemoteSession, _clixml_string, _ScriptSerializer
from commands.scripts import load_script
from storage import Repository


@pytest.mark.parametrize("text", [
    load_script("probe"),
    "line one\r\n\tline two _x000A_ _X0041_ \x00\x1f\x7f\x9f \U0001F600 " * 60,  # every escaped kind, long
    "short\nvalue _x",  # below the threshold: not remembered, escaped the same
])
def test_remembered_escaping_is_pypsrps_own(text: str) -> None:
    assert _ScriptSerializer()._serialize_string(text) == Serializer()._serialize_string(text)


def test_a_script_text_is_escaped_once_per_process() -> None:
    text = load_script("probe") + "\n# a text no other test sent"
    before = _clixml_string.cache_info()
    _ScriptSerializer()._serialize_string(text)
    _ScriptSerializer()._serialize_string(text)
    after = _clixml_string.cache_info()
    assert (after.misses - before.misses, after.hits - before.hits) == (1, 1)


def test_probe_over_https_uses_the_remembering_serializer_and_no_environment_proxies(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A proxy in the environment must not be used (no_proxy), and is no longer looked up per request.
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")
    with Lab(["healthy"], tls=True) as lab:
        server = lab.server_config("vpn-healthy")
        assert server.transport == "https" and server.ca_bundle
        with RemoteSession(server, LAB_PASSWORD) as session:
            first = session.probe()
            second = session.probe()
            pool = session._pool
            assert pool is not None and isinstance(pool._serializer, _ScriptSerializer)
            assert session._wsman is not None and session._wsman.transport.session.trust_env is False
    assert first["schema"] == second["schema"] == "sstp-bot/snapshot/v1"
    assert first["sstp"] == second["sstp"]


def _record(repo: Repository, server: str) -> int:
    now = repo._now()
    return repo.record_check(server=server, actor="t", source="cli", started_at=now, finished_at=now,
                             status="healthy", findings=[])


def test_writers_of_one_process_take_turns_and_all_land(tmp_path: Path) -> None:
    repo = Repository(f"sqlite:///{tmp_path / 'db.sqlite'}")
    ids: list[int] = []
    errors: list[BaseException] = []

    def write(n: int) -> None:
        try:
            ids.append(_record(repo, f"srv{n:02d}"))
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(n,)) for n in range(25)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    repo.close()
    assert errors == [] and len(set(ids)) == 25


def test_a_writer_past_its_turn_still_meets_sqlites_busy_timeout(tmp_path: Path) -> None:
    """A thread stuck behind this process's writer waits at most busy_timeout for its turn, then asks
    SQLite as before: a database locked from outside is reported, never waited on forever."""
    repo = Repository(f"sqlite:///{tmp_path / 'db.sqlite'}", busy_timeout_ms=200, write_retry_seconds=0)
    holder_in, release = threading.Event(), threading.Event()

    def hold() -> None:
        with repo._write():
            holder_in.set()
            release.wait(10)

    holder = threading.Thread(target=hold)
    holder.start()
    assert holder_in.wait(5)
    started = time.monotonic()
    with pytest.raises(Exception, match="locked"):
        _record(repo, "srv")
    waited = time.monotonic() - started
    release.set()
    holder.join()
    assert waited < 5
    assert _record(repo, "srv") > 0  # the turn was given back
    repo.close()



def test_sessions_built_in_many_threads_register_namespaces_one_at_a_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """pypsrp's WSMan() re-registers its XML namespaces in ElementTree's global map (delete, then add);
    two built at once failed a cold sweep with "dictionary keys changed during iteration". Sessions
    built by 8 threads at once must never be inside that registration together."""
    import xml.etree.ElementTree as ET

    with Lab(["healthy"]) as lab:
        server = lab.server_config("vpn-healthy")
    original = ET.register_namespace
    inside, most = [0], [0]
    count_lock = threading.Lock()

    def watched(prefix: str, uri: str) -> None:
        with count_lock:
            inside[0] += 1
            most[0] = max(most[0], inside[0])
        time.sleep(0.0005)  # widen the window a race needs
        try:
            original(prefix, uri)
        finally:
            with count_lock:
                inside[0] -= 1

    monkeypatch.setattr(ET, "register_namespace", watched)
    start = threading.Barrier(8)
    errors: list[BaseException] = []

    def build() -> None:
        start.wait()
        try:
            for _ in range(3):
                RemoteSession(server, LAB_PASSWORD)._build_wsman().close()
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=build) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert most[0] == 1
