"""The PSRP runner against the loopback lab: real pypsrp, real NTLM, real TLS; no mocks."""

from __future__ import annotations

import dataclasses
import logging
from collections import Counter

import pytest

from commands.errors import RemoteError, UsageError
from commands.lab.lab import FAULTS, LAB_PASSWORD, WRONG_PASSWORD, Lab
from commands.psrp import RemoteSession, probe_server

FAULT_KINDS = {fault: kind for fault, kind in FAULTS.items() if kind is not None}


@pytest.fixture(scope="module")
def lab():
    faults = {f"f-{name}": [name] for name in FAULT_KINDS}
    faults["f-not_elevated"] = ["not_elevated"]
    extra = [(name, "iis-binding") for name in faults]
    with Lab(["healthy", "iis-binding"], faults=faults, extra_servers=extra) as lab:
        yield lab


@pytest.fixture(scope="module")
def tls_lab():
    with Lab(["healthy"], tls=True) as lab:
        yield lab


@pytest.fixture(scope="module")
def basic_lab():
    with Lab(["healthy"], tls=True, auth="basic") as lab:
        yield lab


def _actions(server) -> Counter[str]:
    return Counter(r.action for r in server.requests)


def test_probe_round_trip_ntlm_with_message_encryption_over_http(lab):
    server = lab.servers["vpn-healthy"]
    server.endpoint.clear_log()
    with RemoteSession(lab.server_config("vpn-healthy"), LAB_PASSWORD) as session:
        snapshot = session.probe()
    assert snapshot["schema"] == "sstp-bot/snapshot/v1"
    assert snapshot["host"]["computer_name"] == "VPN-HEALTHY"
    assert snapshot == server.twin.probe() | {"collected_at": snapshot["collected_at"]}
    assert lab.server_config("vpn-healthy").transport == "http"


def test_probe_server_reads_the_password_file(lab, tmp_path):
    path = tmp_path / "pw"
    path.write_text(LAB_PASSWORD + "\n")
    cfg = lab.server_config("vpn-healthy", password_file=str(path))
    assert probe_server(cfg, {})["sstp"]["listener_port"] == 443


def test_a_check_costs_one_create_one_command_one_delete(lab):
    server = lab.servers["vpn-iis"]
    server.endpoint.clear_log()
    with RemoteSession(lab.server_config("vpn-iis"), LAB_PASSWORD) as session:
        session.probe()
    actions = _actions(server)
    assert actions["Create"] == 1 and actions["Command"] == 1 and actions["Delete"] == 1
    wsman = sum(n for a, n in actions.items() if a != "auth")
    assert wsman == 5  # Create, Receive (pool opened), Command, Receive (output), Delete
    assert actions["auth"] == 3  # NTLM over HTTP: 401, 401, empty POST -> 200 on a new connection
    assert len({r.connection for r in server.requests}) == 1  # keep-alive: one TCP connection


def test_a_warm_session_adds_two_requests_per_script(lab):
    server = lab.servers["vpn-iis"]
    with RemoteSession(lab.server_config("vpn-iis"), LAB_PASSWORD) as session:
        session.probe()
        server.endpoint.clear_log()
        session.probe()
        assert Counter(r.action for r in server.requests) == Counter({"Command": 1, "Receive": 1})


def test_https_with_the_lab_ca_and_validation_on(tls_lab):
    cfg = tls_lab.server_config("vpn-healthy")
    assert cfg.transport == "https" and cfg.verify_tls and cfg.ca_bundle
    with RemoteSession(cfg, LAB_PASSWORD) as session:
        assert session.probe()["host"]["is_admin"] is True
    actions = _actions(tls_lab.servers["vpn-healthy"])
    assert actions["Create"] == 1


def test_https_without_the_ca_bundle_is_a_tls_error(tls_lab):
    cfg = dataclasses.replace(tls_lab.server_config("vpn-healthy"), ca_bundle=None)
    with pytest.raises(RemoteError) as err:
        RemoteSession(cfg, LAB_PASSWORD).open()
    assert err.value.kind == "tls"
    assert "ca_bundle" in err.value.message


def test_basic_over_https(basic_lab):
    cfg = basic_lab.server_config("vpn-healthy")
    assert cfg.auth == "basic"
    with RemoteSession(cfg, LAB_PASSWORD) as session:
        assert session.probe()["schema"] == "sstp-bot/snapshot/v1"
    # Basic sends credentials with every request: no handshake round trips.
    assert _actions(basic_lab.servers["vpn-healthy"])["auth"] == 0


def test_basic_over_http_is_refused_before_connecting(lab):
    cfg = dataclasses.replace(lab.server_config("vpn-healthy"), auth="basic")
    server = lab.servers["vpn-healthy"]
    server.endpoint.clear_log()
    with pytest.raises(RemoteError) as err:
        RemoteSession(cfg, LAB_PASSWORD).open()
    assert err.value.kind == "auth" and "https" in err.value.message
    assert server.requests == []


def test_parameters_are_validated_before_anything_is_sent(lab):
    server = lab.servers["vpn-iis"]
    server.endpoint.clear_log()
    with pytest.raises(UsageError):
        RemoteSession(lab.server_config("vpn-iis"), LAB_PASSWORD).run("set_sstp_certificate", Thumbprint="'; rm -rf")
    with pytest.raises(UsageError):
        # A plan action that is an executor sequence, not a script: nothing to send.
        RemoteSession(lab.server_config("vpn-iis"), LAB_PASSWORD).run("bind_sstp_certificate", Thumbprint="AB" * 20)
    with pytest.raises(UsageError):
        RemoteSession(lab.server_config("vpn-iis"), LAB_PASSWORD).run("probe", Evil=1)
    assert server.requests == []


@pytest.mark.parametrize("fault,kind", sorted(FAULT_KINDS.items()))
def test_every_fault_maps_to_its_error_kind_and_leaves_the_twin_alone(lab, fault, kind, caplog):
    name = f"f-{fault}"
    server = lab.servers[name]
    before = server.twin.copy_state()
    caplog.set_level(logging.DEBUG)
    password = lab.password_for(name)
    thumbprint = next(c.thumbprint for c in before.certificates if c.sha256 == before.sha256_hash)
    for script, params in (("probe", {}), ("set_sstp_certificate", {"Thumbprint": thumbprint})):
        with pytest.raises(RemoteError) as err, RemoteSession(lab.server_config(name), password) as session:
            session.run(script, **params)
        assert err.value.kind == kind, err.value.message
        assert err.value.server == name
        for secret in (LAB_PASSWORD, WRONG_PASSWORD):
            assert secret not in str(err.value)
    assert server.twin.copy_state() == before
    assert server.twin.actions == []
    for secret in (LAB_PASSWORD, WRONG_PASSWORD):
        assert secret not in caplog.text


def test_not_elevated_probe_reports_it_and_fixes_are_refused(lab):
    name = "f-not_elevated"
    server = lab.servers[name]
    before = server.twin.copy_state()
    with RemoteSession(lab.server_config(name), LAB_PASSWORD) as session:
        assert session.probe()["host"]["is_admin"] is False
        # Like the shipped scripts: checked first, answered ok=false, nothing touched.
        result = session.run("delete_httpsys_binding", Endpoint="0.0.0.0:443")
    assert result == result | {"ok": False, "changed": False}
    assert "not elevated" in result["detail"]
    assert server.twin.copy_state() == before


def test_the_password_never_appears_in_messages_or_logs(lab, caplog):
    caplog.set_level(logging.DEBUG)
    secret = "S3cr3t-Pa55word-xyz"
    with pytest.raises(RemoteError) as err:
        RemoteSession(lab.server_config("vpn-healthy"), secret).open()
    assert err.value.kind == "auth"
    assert secret not in str(err.value) and secret not in repr(err.value)
    assert secret not in caplog.text


def test_a_script_past_its_timeout_is_stopped_so_the_session_stays_usable(lab):
    """A step that hangs is stopped (WS-Man Signal) when it times out: the pool's one runspace is
    free again, and the session is closed cleanly afterwards."""
    name = "f-hang"
    server = lab.servers[name]
    lab.clear_logs()
    with pytest.raises(RemoteError) as err, RemoteSession(lab.server_config(name), lab.password_for(name)) as session:
        session.run("probe")
    assert err.value.kind == "timeout"
    actions = [r.action for r in server.requests]
    assert "Signal" in actions and actions.index("Signal") > actions.index("Command")
    assert actions[-1] == "Delete"


def test_json_nested_too_deeply_is_bad_output_for_that_server_only(monkeypatch, tmp_path):
    """A server answering with JSON deeper than Python's decoder goes must not abort a fleet check:
    its own check is bad_output, the others go on."""
    from datetime import UTC, datetime

    from bot.config import Config
    from bot.service import Actor, Service
    from commands.lab.runtime import ScriptOutcome, ScriptRuntime
    from storage import Repository

    real = ScriptRuntime.__call__
    with Lab(["healthy", "iis-binding"]) as deep_lab:
        evil = deep_lab.servers["vpn-iis"].twin

        def deep_for_one(self, text, params, *, local_scope=True):  # type: ignore[no-untyped-def]
            if self.twin is evil:
                return ScriptOutcome(output=["[" * 200_000 + "]" * 200_000])
            return real(self, text, params, local_scope=local_scope)

        monkeypatch.setattr(ScriptRuntime, "__call__", deep_for_one)
        secret = tmp_path / "password"
        secret.write_text(LAB_PASSWORD)
        secret.chmod(0o600)
        servers = {n: deep_lab.server_config(n, password_file=str(secret)) for n in deep_lab.servers}
        service = Service(Config(servers=servers), Repository("sqlite://"), environ={},
                          clock=lambda: datetime.now(UTC), session_factory=RemoteSession)
        try:
            outcomes = {o.result.server: o.result for o in service.check(list(servers.values()), Actor("t", "cli"))}
        finally:
            service.close()
    assert outcomes["vpn-iis"].error_kind == "bad_output" and "nested too deeply" in str(outcomes["vpn-iis"].error_message)
    assert outcomes["vpn-healthy"].status == "healthy"
