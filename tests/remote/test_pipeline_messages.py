"""Remembered CREATE_PIPELINE bodies (issue 12): the bytes sent are pypsrp's own, and a body is only
reused for exactly the same pipeline (same command, scope, typed parameters, protocol version)."""

from __future__ import annotations

from typing import Any

import pytest
from pypsrp.messages import Destination, Message
from pypsrp.powershell import PowerShell, RunspacePool
from pypsrp.serializer import Serializer
from pypsrp.wsman import WSMan

from commands import psrp
from commands.lab.lab import LAB_PASSWORD, Lab
from commands.psrp import RemoteSession, _KeyedPowerShell, _PipelineMessages, _ScriptSerializer
from commands.scripts import load_script

RPID = "11111111-2222-3333-4444-555555555555"
PID = "66666666-7777-8888-9999-000000000000"


def _create_pipeline(monkeypatch: pytest.MonkeyPatch, protocol: str, key: Any, script: str,
                     params: dict[str, Any]) -> Any:
    """The CREATE_PIPELINE pypsrp's begin_invoke builds for a `_KeyedPowerShell`, captured unsent."""
    captured: list[Any] = []
    monkeypatch.setattr(PowerShell, "_invoke", lambda self, msg: captured.append(msg))
    pool = RunspacePool(WSMan("127.0.0.1", ssl=True, auth="basic", username="u", password="p"))
    pool.protocol_version = protocol
    ps = _KeyedPowerShell(pool, key)
    ps.add_script(script, use_local_scope=True)
    for name, value in params.items():
        ps.add_parameter(name, value)
    ps.begin_invoke()
    monkeypatch.undo()
    (msg,) = captured
    assert msg.sstp_message_key == key
    return msg


def _pack(msg: Any, serializer: Serializer) -> bytes:
    return Message(Destination.SERVER, RPID, PID, msg, serializer).pack()


@pytest.mark.parametrize("protocol", ["2.1", "2.2", "2.3"])
@pytest.mark.parametrize(("script", "params"), [
    ("probe", {"EventHours": 24, "MaxEvents": 100}),
    ("set_sstp_certificate", {"Thumbprint": "A" * 40}),
    ("remove_iis_binding", {"Site": "Default Web Site", "BindingInformation": "*:443:"}),
    ("restart_iis", {}),
])
def test_a_remembered_body_is_byte_for_byte_pypsrps_own(
    monkeypatch: pytest.MonkeyPatch, protocol: str, script: str, params: dict[str, Any]
) -> None:
    key = ("test", protocol, script, tuple(params.items()))
    msg = _create_pipeline(monkeypatch, protocol, key, load_script(script), params)
    monkeypatch.setattr(psrp, "_PIPELINE_MESSAGES", _PipelineMessages())
    plain = _pack(msg, Serializer())  # pypsrp's serializer ignores the key
    first = _pack(msg, _ScriptSerializer())  # rendered, then remembered
    second = _pack(msg, _ScriptSerializer())  # from memory
    assert psrp._PIPELINE_MESSAGES.hits == 1
    assert first == second == plain
    assert load_script(script).split("\n", 1)[0].encode() in plain or script == "restart_iis"


def test_messages_without_a_key_are_serialized_as_before(monkeypatch: pytest.MonkeyPatch) -> None:
    msg = _create_pipeline(monkeypatch, "2.3", "k", load_script("restart_iis"), {})
    del msg.sstp_message_key
    monkeypatch.setattr(psrp, "_PIPELINE_MESSAGES", _PipelineMessages())
    assert _pack(msg, _ScriptSerializer()) == _pack(msg, Serializer())
    assert psrp._PIPELINE_MESSAGES.hits == 0 and not psrp._PIPELINE_MESSAGES._bodies


def test_the_memory_is_bounded_oldest_first() -> None:
    memory = _PipelineMessages(capacity=2)
    memory.put("a", b"1")
    memory.put("b", b"2")
    assert memory.get("a") == b"1"  # a is now the newest
    memory.put("c", b"3")
    assert (memory.get("a"), memory.get("b"), memory.get("c")) == (b"1", None, b"3")


def test_every_parameter_value_reaches_the_server_in_one_session(monkeypatch: pytest.MonkeyPatch) -> None:
    """Through the lab: the same script with other values is never answered from another's body."""
    monkeypatch.setattr(psrp, "_PIPELINE_MESSAGES", _PipelineMessages())
    with Lab(["healthy"]) as lab:
        server = lab.servers["vpn-healthy"]
        runtime = server.endpoint.executor
        seen: list[dict[str, Any]] = []
        original = runtime.__call__

        def watched(text: str, params: dict[str, Any], *, local_scope: bool | None = True) -> Any:
            seen.append(dict(params))
            return original(text, params, local_scope=local_scope)

        monkeypatch.setattr(server.endpoint, "executor", watched)
        with RemoteSession(lab.server_config("vpn-healthy"), LAB_PASSWORD) as session:
            for event_hours, max_events in [(24, 100), (24, 5), (48, 100), (24, 100), (24, 5)]:
                snapshot = session.probe(event_hours=event_hours, max_events=max_events)
                assert snapshot["schema"] == "sstp-bot/snapshot/v1"
    assert [(p["EventHours"], p["MaxEvents"]) for p in seen] == [(24, 100), (24, 5), (48, 100), (24, 100), (24, 5)]
    assert psrp._PIPELINE_MESSAGES.hits == 2  # the last two repeat earlier pipelines exactly


@pytest.mark.parametrize("tls", [True, False])
def test_ntlm_connects_with_the_nt_hash_alone(tls: bool) -> None:
    """NTLMv2 (and message encryption over HTTP) from the NT hash derived once per process: the lab
    verifies the proof; a wrong password still fails as `auth`."""
    import spnego

    with Lab(["healthy"], tls=tls) as lab:
        server = lab.server_config("vpn-healthy")
        assert server.auth == "ntlm"
        with RemoteSession(server, LAB_PASSWORD) as session:
            assert session.probe()["schema"] == "sstp-bot/snapshot/v1"
            assert session._wsman is not None
            auth = session._wsman.transport.session.auth
            assert auth.password is None and [type(c) for c in auth.username] == [spnego.NTLMHash]
            (credential,) = auth.username
            assert LAB_PASSWORD not in repr(credential) and credential.nt_hash not in repr(credential)
        with pytest.raises(psrp.RemoteError) as err, RemoteSession(server, LAB_PASSWORD + "x") as session:
            session.probe()
        assert err.value.kind == "auth"


def test_one_watchdog_thread_expires_only_what_is_not_cancelled() -> None:
    """The deadlines of every exchange share one thread: an exchange past its deadline is expired,
    a cancelled one never is, and cancelled entries do not pile up."""
    import threading
    import time

    watchdog = psrp._Watchdog()

    class Probe(psrp._Exchange):
        def __init__(self) -> None:
            super().__init__()
            self.fired = threading.Event()

        def expire(self) -> None:
            self.fired.set()

    late, kept, early = Probe(), Probe(), Probe()
    watch_late = watchdog.watch(0.3, late)
    watchdog.watch(0.2, kept)
    watch_early = watchdog.watch(0.05, early)
    watchdog.cancel(watch_early)
    watchdog.cancel(watch_late)
    assert kept.fired.wait(5)
    time.sleep(0.3)
    assert not late.fired.is_set() and not early.fired.is_set()
    for _ in range(500):
        watchdog.cancel(watchdog.watch(60, Probe()))
    assert len(watchdog._heap) <= 128
    assert sum(t.name == "sstp-wsman-watchdog" for t in threading.enumerate()) >= 1
