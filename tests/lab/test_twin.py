"""The twin's Windows semantics, exercised through real pypsrp sessions (DOMAIN.md 0, 1.3, 4)."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

import pytest

from commands.executor import PlanExecutor, Timing
from commands.lab.lab import LAB_PASSWORD, Lab
from commands.lab.twin import IIS_APP_ID, SSTP_APP_ID
from commands.psrp import RemoteSession

FIXABLE = [
    "iis-binding",
    "stale-netsh-binding",
    "iis-ipv6-only",
    "missing-bindings",
    "urlacl-conflict",
    "sni-binding",
    "renewal-not-bound",
    "expired-with-renewal",
    "remoteaccess-stopped",
    "iis-and-urlacl",
    "expired-iis-binding",
]


@pytest.fixture()
def lab():
    with Lab(FIXABLE) as lab:
        yield lab


def _session(lab: Lab, name: str) -> RemoteSession:
    return RemoteSession(lab.server_config(name), LAB_PASSWORD)


FAST = Timing(restart_timeout=30, poll_interval=0.05, first_poll=0.01)


def _step(session: RemoteSession, action: str, **params: Any) -> dict[str, Any]:
    """One plan step as the executor carries it out (the two sequences are not scripts, DESIGN 9 [2])."""
    return PlanExecutor(session, timing=FAST).run_step({"action": action, "params": params}).to_json()


def _target(snapshot: dict[str, Any]) -> str:
    """The certificate a plan would bind: the latest-expiring one whose name is the public name."""
    import base64

    from cryptography import x509

    best = None
    for c in snapshot["certificates"]:
        cert = x509.load_der_x509_certificate(base64.b64decode(c["der"]))
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
            x509.DNSName
        )
        if "vpn.example.com" in names and c["has_private_key"] and (
            best is None or cert.not_valid_after_utc > best[0]
        ):
                best = (cert.not_valid_after_utc, c["thumbprint"])
    assert best
    return best[1]


def _healthy(snapshot: dict[str, Any]) -> list[str]:
    """What is still wrong, judged like the engine's critical/warning findings (subset used here)."""
    problems = []
    sha1 = snapshot["sstp"]["sha1_hash"]
    port = snapshot["sstp"]["listener_port"]
    wild = {b["endpoint"]: b for b in snapshot["http_sys"]["ip_bindings"]}
    for ep in (f"0.0.0.0:{port}", f"[::]:{port}"):
        if ep not in wild:
            problems.append(f"HTTPSYS_BINDING_MISSING {ep}")
        elif wild[ep]["cert_hash"] != sha1:
            problems.append(f"SSTP_HASH_MISMATCH {ep}")
        elif wild[ep]["app_id"] != SSTP_APP_ID:
            problems.append(f"HTTPSYS_FOREIGN_BINDING {ep}")
    if snapshot["iis"]["https_bindings"]:
        problems.append("IIS_HTTPS_BINDING")
    if snapshot["http_sys"]["sni_bindings"]:
        problems.append("HTTPSYS_SNI_BINDING")
    if any("sra_" not in r["url"] for r in snapshot["http_sys"]["url_reservations"]):
        problems.append("URLACL_CONFLICT")
    if (snapshot["services"]["RemoteAccess"] or {}).get("status") != "Running":
        problems.append("REMOTEACCESS_STOPPED")
    if not snapshot["listeners"]:
        problems.append("SSTP_NOT_LISTENING")
    return problems


def _plan(snapshot: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """The DESIGN 5 plan order: IIS bindings, restart IIS, URL ACLs, SNI, wildcard bindings, bind."""
    target = _target(snapshot)
    port = snapshot["sstp"]["listener_port"]
    steps: list[tuple[str, dict[str, Any]]] = []
    for b in snapshot["iis"]["https_bindings"]:
        steps.append(("remove_iis_binding", {"Site": b["site"], "BindingInformation": b["binding_information"]}))
    if steps:
        steps.append(("restart_iis", {}))
    for r in snapshot["http_sys"]["url_reservations"]:
        if "sra_" not in r["url"]:
            steps.append(("delete_url_reservation", {"Url": r["url"]}))
    for b in snapshot["http_sys"]["sni_bindings"]:
        steps.append(("delete_httpsys_binding", {"Endpoint": b["endpoint"]}))
    for b in snapshot["http_sys"]["ip_bindings"]:
        if b["endpoint"] in (f"0.0.0.0:{port}", f"[::]:{port}") and not (
            b["cert_hash"] == target and b["app_id"] == SSTP_APP_ID
        ):
            steps.append(("delete_httpsys_binding", {"Endpoint": b["endpoint"]}))
    steps.append(("bind_sstp_certificate", {"Thumbprint": target}))
    return steps


@pytest.mark.parametrize("scenario", FIXABLE)
def test_the_plan_in_design_order_repairs_every_fixable_scenario(lab, scenario):
    name = lab.servers and next(n for n, s in lab.servers.items() if s.spec.scenario == scenario)
    with _session(lab, name) as session:
        before = session.probe()
        assert _healthy(before) or scenario in ("renewal-not-bound", "expired-with-renewal")
        restarted = False
        for action, params in _plan(before):
            result = _step(session, action, **params)
            assert result["ok"], (action, result)
            restarted |= action == "bind_sstp_certificate" and result["changed"]
        after = session.probe()
    assert _healthy(after) == []
    assert after["sstp"]["sha1_hash"] == _target(before)
    if restarted:
        assert after["vpn_connections"] == 0  # binding restarts RemoteAccess: users dropped


def test_classic_wrong_order_skipping_the_http_sys_delete_leaves_the_mismatch(lab):
    with _session(lab, "vpn-iis") as session:
        before = session.probe()
        target = before["sstp"]["sha1_hash"]
        session.run("remove_iis_binding", Site="Default Web Site", BindingInformation="*:443:")
        session.run("restart_iis")
        # RRAS creates its bindings only where none exist (DOMAIN 0): IIS's stay in place.
        result = _step(session, "bind_sstp_certificate", Thumbprint=target)
        after = session.probe()
    assert result["ok"] is False and result["changed"] is True
    assert "delete it first" in result["detail"]
    assert "SSTP_HASH_MISMATCH 0.0.0.0:443" in _healthy(after)
    owners = {b["endpoint"]: b["app_id"] for b in after["http_sys"]["ip_bindings"]}
    assert owners == {"0.0.0.0:443": IIS_APP_ID, "[::]:443": IIS_APP_ID}


def test_classic_deleting_http_sys_before_removing_iis_lets_iis_take_443_back(lab):
    with _session(lab, "vpn-iis") as session:
        before = session.probe()
        session.run("delete_httpsys_binding", Endpoint="0.0.0.0:443")
        session.run("delete_httpsys_binding", Endpoint="[::]:443")
        session.run("restart_iis")  # IIS still has its site binding and re-asserts it
        session.run("remove_iis_binding", Site="Default Web Site", BindingInformation="*:443:")
        _step(session, "bind_sstp_certificate", Thumbprint=before["sstp"]["sha1_hash"])
        after = session.probe()
    assert "SSTP_HASH_MISMATCH 0.0.0.0:443" in _healthy(after)


def test_removing_the_iis_binding_leaves_the_http_sys_binding(lab):
    with _session(lab, "vpn-iis") as session:
        result = session.run("remove_iis_binding", Site="Default Web Site", BindingInformation="*:443:")
        again = session.run("remove_iis_binding", Site="Default Web Site", BindingInformation="*:443:")
        after = session.probe()
    assert result["changed"] is True and again == again | {"ok": True, "changed": False}
    assert after["iis"]["https_bindings"] == []
    assert {b["app_id"] for b in after["http_sys"]["ip_bindings"]} == {IIS_APP_ID}


def test_fix_scripts_are_idempotent(lab):
    with _session(lab, "vpn-stale") as session:
        first = session.run("delete_httpsys_binding", Endpoint="0.0.0.0:443")
        second = session.run("delete_httpsys_binding", Endpoint="0.0.0.0:443")
        url = session.run("delete_url_reservation", Url="https://+:8443/")
    assert (first["changed"], second["changed"]) == (True, False)
    assert second["ok"] and url == url | {"ok": True, "changed": False}


def test_restarting_remoteaccess_drops_users_and_brings_the_listener_back(lab):
    with _session(lab, "vpn-stopped") as session:
        before = session.probe()
        assert before["listeners"] == [] and before["vpn_connections"] == 0
        result = _step(session, "restart_remoteaccess")
        after = session.probe()
    assert result["ok"] and after["services"]["RemoteAccess"]["status"] == "Running"
    assert {(x["pid"], x["port"]) for x in after["listeners"]} == {(4, 443)}


def test_binding_a_certificate_without_private_key_is_refused_untouched():
    with Lab(["missing-bindings"]) as lab:
        twin = lab.servers["vpn-nobind"].twin
        for c in twin.state.certificates:
            c.has_private_key = False
        before = twin.copy_state()
        thumb = twin.state.certificates[0].thumbprint
        with _session(lab, "vpn-nobind") as session:
            result = _step(session, "bind_sstp_certificate", Thumbprint=thumb)
        assert twin.copy_state() == before
    assert result["ok"] is False and result["changed"] is False and "private key" in result["detail"]


def test_binding_an_unknown_certificate_is_refused(lab):
    with _session(lab, "vpn-sni") as session:
        result = _step(session, "bind_sstp_certificate", Thumbprint="AB" * 20)
    assert result["ok"] is False and "is not in Cert:" in result["detail"]


def test_binding_the_bound_certificate_again_changes_nothing(lab):
    twin = lab.servers["vpn-sni"].twin
    with _session(lab, "vpn-sni") as session:
        before = session.probe()
        result = _step(session, "bind_sstp_certificate", Thumbprint=before["sstp"]["sha1_hash"])
        after = session.probe()
    assert result["ok"] is True and result["changed"] is False
    assert after["vpn_connections"] == before["vpn_connections"] > 0  # no restart, users stay
    assert twin.actions[-1][0] == "set_sstp_certificate"
    assert "control_remoteaccess" not in [a for a, _ in twin.actions]  # no restart


# --- service start times (services.<name>.started_at, used to ignore events of the previous run) ----


def _started(snapshot: dict[str, Any], name: str) -> str | None:
    return snapshot["services"][name]["started_at"]


def test_running_services_report_when_they_started_and_stopped_ones_do_not(lab):
    with _session(lab, "vpn-stopped") as session:
        stopped = session.probe()
    with _session(lab, "vpn-iis") as session:
        running = session.probe()
    assert _started(stopped, "RemoteAccess") is None
    for name in ("RemoteAccess", "SstpSvc", "W3SVC", "WAS"):
        value = _started(running, name)
        assert value is not None and re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", value), value
        assert value < running["collected_at"]


def test_restarting_remoteaccess_records_the_twin_clock_as_its_start(lab):
    twin = lab.servers["vpn-urlacl"].twin
    restart = datetime(2031, 5, 6, 7, 8, 9, 500000, tzinfo=UTC)
    with _session(lab, "vpn-urlacl") as session:
        before = session.probe()
        twin.clock = lambda: restart
        assert _step(session, "restart_remoteaccess")["ok"]
        after = session.probe()
    assert _started(after, "RemoteAccess") == "2031-05-06T07:08:09Z"
    assert _started(after, "SstpSvc") == _started(before, "SstpSvc")  # running already: not restarted
    assert _started(after, "W3SVC") == _started(before, "W3SVC")


def test_starting_a_stopped_remoteaccess_records_its_start(lab):
    twin = lab.servers["vpn-stopped"].twin
    twin.clock = lambda: datetime(2031, 1, 2, 3, 4, 5, tzinfo=UTC)
    with _session(lab, "vpn-stopped") as session:
        assert _step(session, "restart_remoteaccess")["ok"]
        after = session.probe()
    assert _started(after, "RemoteAccess") == "2031-01-02T03:04:05Z"


def test_binding_a_certificate_restarts_remoteaccess_and_records_it_unless_nothing_changes(lab):
    twin = lab.servers["vpn-iis"].twin
    with _session(lab, "vpn-iis") as session:
        before = session.probe()
        twin.clock = lambda: datetime(2031, 2, 3, 4, 5, 6, tzinfo=UTC)
        for action, params in _plan(before):
            assert _step(session, action, **params)["ok"], action
        fixed = session.probe()
        twin.clock = lambda: datetime(2031, 2, 3, 5, 0, 0, tzinfo=UTC)
        again = _step(session, "bind_sstp_certificate", Thumbprint=_target(before))
        after = session.probe()
    assert _started(before, "RemoteAccess") < "2031"
    assert _started(fixed, "RemoteAccess") == "2031-02-03T04:05:06Z"
    assert _started(fixed, "W3SVC") == "2031-02-03T04:05:06Z"  # iisreset restarted W3SVC and WAS
    assert again["changed"] is False and _started(after, "RemoteAccess") == "2031-02-03T04:05:06Z"


def test_events_before_the_fix_stay_in_the_log_and_predate_the_new_start():
    with Lab(["events-before-fix"]) as lab, _session(lab, "vpn-iis-events") as session:
        before = session.probe()
        for action, params in _plan(before):
            assert _step(session, action, **params)["ok"], action
        after = session.probe()
    assert len(after["events"]) == len(before["events"]) == 2
    assert all(e["time"] < _started(after, "RemoteAccess") for e in after["events"])
    assert all(e["time"] > _started(before, "RemoteAccess") for e in before["events"])


# --- the probe's second-release data (DESIGN 3 [2], DOMAIN 14) ---------------------------------------


def test_events_are_capped_per_provider_and_the_rest_counted(lab):
    twin = lab.servers["vpn-iis"].twin
    now = datetime.now(UTC)
    with twin.lock:
        twin.state.events = [
            {"provider": "Schannel", "id": 36870, "time": now.strftime("%Y-%m-%dT%H:%M:%SZ"), "message": "key"}
            for _ in range(150)
        ] + [{"provider": "Microsoft-Windows-RasSstp", "id": 21, "time": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
              "message": "hash"}]
    with _session(lab, "vpn-iis") as session:
        capped = session.probe()
        small = session.run("probe", MaxEvents=10)
    assert len(capped["events"]) == 101 and capped["events_omitted"] == 50
    assert len(small["events"]) == 11 and small["events_omitted"] == 140


def test_a_pid_4_listener_is_not_sstp_registered_urls_tell(lab):
    """IIS keeps listening through HTTP.sys (PID 4) while RemoteAccess is stopped: the listeners look
    the same, the registered URLs do not (DOMAIN 14)."""
    twin = lab.servers["vpn-iis"].twin
    sstp_url = "HTTPS://+:443/SRA_{BA195980-CD49-458B-9E23-C84EE0ADCD75}/"
    with _session(lab, "vpn-iis") as session:
        running = session.probe()
        assert session.run("control_remoteaccess", Action="Stop")["status"] == "Stopped"
        stopped = session.probe()
        state = session.run("remoteaccess_state")
    assert running["http_sys"]["registered_urls"] == [sstp_url, "HTTPS://*:443/"]
    assert stopped["listeners"] == running["listeners"] and {ln["pid"] for ln in stopped["listeners"]} == {4}
    assert stopped["http_sys"]["registered_urls"] == ["HTTPS://*:443/"]  # IIS only
    assert (state["status"], state["sstp_registered"]) == ("Stopped", False)
    assert twin.copy_state().services["RemoteAccess"].status == "Stopped"


def test_a_key_that_is_gone_reads_has_private_key_but_not_usable(lab):
    twin = lab.servers["vpn-sni"].twin
    with twin.lock:
        cert = twin.state.certificates[0]
        cert.private_key_usable = False
    with _session(lab, "vpn-sni") as session:
        snapshot = session.probe()
    entry = next(c for c in snapshot["certificates"] if c["thumbprint"] == cert.thumbprint)
    assert entry["has_private_key"] is True and entry["private_key_usable"] is False
    assert snapshot["sstp"]["remote_access"]["directaccess"] is False
    assert snapshot["endpoint"] is None


def _twin_states() -> list[tuple[str, Any]]:
    """Every single-server scenario's twin, and variants that change who holds the SSTP port."""
    from dataclasses import replace

    from commands.lab.scenarios import build_state, load_scenario, scenario_names
    from commands.lab.twin import ForeignListener, RrasTwin, Service

    now = datetime.now(UTC)
    twins = []
    for name in scenario_names():
        scenario = load_scenario(name)
        if scenario.is_fleet:
            continue
        for variant in ("as-is", "remoteaccess-stopped", "w3svc-stopped", "other-port", "foreign"):
            state = build_state(scenario.servers[0], now)
            if variant == "remoteaccess-stopped" and state.services.get("RemoteAccess"):
                state.services["RemoteAccess"] = Service("Stopped")
            elif variant == "w3svc-stopped" and state.services.get("W3SVC"):
                state.services["W3SVC"] = replace(state.services["W3SVC"], status="Stopped")  # type: ignore[arg-type]
            elif variant == "other-port":
                state.listener_port = 8443
            elif variant == "foreign":
                state.foreign_listener = ForeignListener(1234, "nginx.exe")
            twins.append((f"{name}/{variant}", RrasTwin(state)))
    return twins


def test_listening_says_whether_the_listener_table_is_empty():
    """The lab's TLS view polls `listening()` (cheap) for what `listeners()` says (DESIGN 11)."""
    seen = set()
    for label, twin in _twin_states():
        assert twin.listening() == bool(twin.listeners()), label
        seen.add(twin.listening())
    assert seen == {True, False}  # both answers occur
