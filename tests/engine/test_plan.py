"""Remediation plans: order, what is left alone, guidance instead of plans, fingerprints."""

from __future__ import annotations

import copy
from datetime import timedelta
from typing import Any

from commands.diagnosis import IIS_APP_ID, SSTP_APP_ID, diagnose
from commands.model import Plan
from commands.remediation import fingerprint, plan
from commands.scripts import validate_params
from commands.snapshot import parse_snapshot
from tests.engine.builder import (
    ADFS_APP_ID,
    NOW,
    Snap,
    add_cert,
    binding,
    cert,
    healthy,
    iis_binding,
    iis_cert,
    machine_cert,
    only,
    server,
    sstp_cert,
    use_sstp_cert,
    with_iis_binding,
)


def _plan(snap: Snap, **server_kwargs: Any) -> tuple[Plan | None, list[Any]]:
    parsed = parse_snapshot(snap)
    srv = server(**server_kwargs)
    findings = diagnose(parsed, srv, NOW)
    return plan(parsed, findings, srv, NOW), findings


def _actions(p: Plan | None) -> list[str]:
    assert p is not None
    return [s.action for s in p.steps]


def test_healthy_has_no_plan() -> None:
    assert _plan(healthy())[0] is None


def test_classic_iis_plan_order() -> None:
    p, _ = _plan(with_iis_binding(healthy()))
    assert _actions(p) == ["remove_iis_binding", "restart_iis", "delete_httpsys_binding", "bind_sstp_certificate"]
    assert p is not None
    remove, _, delete, bind = p.steps
    assert remove.params == {"Site": "Default Web Site", "BindingInformation": "*:443:"}
    assert delete.params == {"Endpoint": "0.0.0.0:443"}
    assert bind.params == {"Thumbprint": sstp_cert().thumbprint}
    assert bind.disruptive and not remove.disruptive and not delete.disruptive
    assert "12 connected VPN users" in bind.description
    for step in p.steps:
        assert validate_params(step.action, dict(step.params)) == step.params


def test_both_wildcards_taken_by_iis_are_both_deleted() -> None:
    snap = with_iis_binding(healthy())
    snap["http_sys"]["ip_bindings"][1] = binding("[::]:443", iis_cert(), IIS_APP_ID)
    p, _ = _plan(snap)
    assert p is not None
    deleted = [s.params["Endpoint"] for s in p.steps if s.action == "delete_httpsys_binding"]
    assert deleted == ["0.0.0.0:443", "[::]:443"]


def test_correct_binding_is_left_alone() -> None:
    p, _ = _plan(with_iis_binding(healthy()))
    assert p is not None
    assert {"Endpoint": "[::]:443"} not in [s.params for s in p.steps]


def test_foreign_binding_deleted_before_bind() -> None:
    snap = healthy()
    add_cert(snap, iis_cert())
    snap["http_sys"]["ip_bindings"][1] = binding("[::]:443", iis_cert(), ADFS_APP_ID)
    p, findings = _plan(snap)
    assert _actions(p) == ["delete_httpsys_binding", "bind_sstp_certificate"]
    assert p is not None
    assert p.steps[0].params == {"Endpoint": "[::]:443"}
    assert only(findings, "HTTPSYS_FOREIGN_BINDING").fixable


def test_foreign_owner_with_target_certificate_is_replaced_when_rebinding() -> None:
    snap = with_iis_binding(healthy())
    snap["http_sys"]["ip_bindings"][1]["app_id"] = IIS_APP_ID  # IIS owns [::]:443 with SSTP's certificate
    p, findings = _plan(snap)
    assert p is not None
    deleted = [s.params["Endpoint"] for s in p.steps if s.action == "delete_httpsys_binding"]
    assert deleted == ["0.0.0.0:443", "[::]:443"]
    info = [f for f in findings if f.id == "HTTPSYS_FOREIGN_BINDING" and f.severity == "info"]
    assert info and info[0].fixable


def test_info_only_findings_give_no_plan() -> None:
    snap = healthy()
    snap["iis"]["https_bindings"].append(iis_binding(sstp_cert()))
    snap["http_sys"]["ip_bindings"][1]["app_id"] = IIS_APP_ID
    p, findings = _plan(snap)
    assert p is None
    assert findings and not any(f.fixable for f in findings)


def test_specific_ip_binding_with_other_certificate_is_deleted_without_rebinding() -> None:
    snap = healthy()
    add_cert(snap, iis_cert())
    snap["http_sys"]["ip_bindings"].append(binding("10.0.0.5:443", iis_cert(), ADFS_APP_ID))
    p, _ = _plan(snap)
    assert p is not None
    assert [(s.action, s.params) for s in p.steps] == [("delete_httpsys_binding", {"Endpoint": "10.0.0.5:443"})]


def test_missing_binding_rebinds_current_certificate() -> None:
    snap = healthy()
    del snap["http_sys"]["ip_bindings"][1]
    p, findings = _plan(snap)
    assert _actions(p) == ["bind_sstp_certificate"]
    assert only(findings, "HTTPSYS_BINDING_MISSING").fixable


def test_sni_and_url_reservation_cleanup_then_restart() -> None:
    snap = healthy()
    snap["http_sys"]["sni_bindings"].append(binding("vpn.example.com:443", iis_cert(), IIS_APP_ID))
    snap["http_sys"]["url_reservations"].append({"url": "https://+:443/", "sddl": None})
    p, findings = _plan(snap)
    assert _actions(p) == ["delete_httpsys_binding", "delete_url_reservation", "restart_remoteaccess"]
    assert all(f.fixable for f in findings)


def test_renewal_is_bound() -> None:
    snap = healthy()
    renewal = cert(not_after=NOW + timedelta(days=4000))
    add_cert(snap, renewal)
    p, findings = _plan(snap)
    assert p is not None
    assert p.steps[-1].action == "bind_sstp_certificate"
    assert p.steps[-1].params == {"Thumbprint": renewal.thumbprint}
    # the old certificate's bindings go first: RRAS does not overwrite existing bindings
    assert _actions(p) == ["delete_httpsys_binding", "delete_httpsys_binding", "bind_sstp_certificate"]
    assert only(findings, "SSTP_CERT_RENEWAL_NOT_BOUND").fixable


def test_expired_certificate_replaced_by_best_candidate() -> None:
    snap = use_sstp_cert(healthy(), cert(not_after=NOW - timedelta(days=3)))
    shorter = cert(not_after=NOW + timedelta(days=90))
    longer = cert(not_after=NOW + timedelta(days=400))
    no_key = cert(not_after=NOW + timedelta(days=900))
    wrong_name = cert(common_name="mail.example.com", not_after=NOW + timedelta(days=900))
    for c in (shorter, longer, wrong_name):
        add_cert(snap, c)
    add_cert(snap, no_key, has_private_key=False)
    p, findings = _plan(snap)
    assert p is not None
    assert p.steps[-1].params == {"Thumbprint": longer.thumbprint}
    assert only(findings, "SSTP_CERT_EXPIRED").fixable


def test_no_valid_candidate_means_guidance_not_plan() -> None:
    snap = use_sstp_cert(healthy(), cert(not_after=NOW - timedelta(days=3)))
    p, findings = _plan(snap)
    assert p is None
    expired = only(findings, "SSTP_CERT_EXPIRED")
    assert not expired.fixable
    assert "Import one" in expired.detail


def test_no_candidate_plus_iis_binding_gives_no_plan() -> None:
    snap = with_iis_binding(use_sstp_cert(healthy(), cert(not_after=NOW - timedelta(days=3))))
    p, findings = _plan(snap)
    assert p is None
    assert not any(f.fixable for f in findings)


def test_not_elevated_gives_no_plan() -> None:
    snap = with_iis_binding(healthy())
    snap["host"]["is_admin"] = False
    assert _plan(snap)[0] is None


def test_foreign_process_on_port_gives_no_plan() -> None:
    snap = with_iis_binding(healthy())
    snap["listeners"] = [{"local_address": "0.0.0.0", "port": 443, "pid": 3120, "process": "nginx"}]
    p, findings = _plan(snap)
    assert p is None
    assert "another program holds port 443" in only(findings, "IIS_HTTPS_BINDING").detail


def test_stopped_remote_access_is_started() -> None:
    snap = healthy()
    snap["services"]["RemoteAccess"]["status"] = "Stopped"
    snap["listeners"] = []
    p, findings = _plan(snap)
    assert _actions(p) == ["restart_remoteaccess"]
    assert p is not None and p.steps[0].disruptive
    assert p.steps[0].description.startswith("Start")
    assert only(findings, "REMOTEACCESS_STOPPED").fixable


def test_disabled_remote_access_is_guidance() -> None:
    snap = healthy()
    snap["services"]["RemoteAccess"] = {"status": "Stopped", "start_type": "Disabled"}
    snap["listeners"] = []
    p, findings = _plan(snap)
    assert p is None
    assert "disabled" in only(findings, "REMOTEACCESS_STOPPED").detail


def test_not_listening_restarts_once_with_bind() -> None:
    snap = with_iis_binding(healthy())
    snap["listeners"] = []
    p, _ = _plan(snap)
    actions = _actions(p)
    assert "restart_remoteaccess" not in actions and actions[-1] == "bind_sstp_certificate"


def test_offload_mode_has_no_bind() -> None:
    snap = healthy()
    snap["sstp"]["use_https"] = False
    snap["sstp"]["sha256_hash"] = "CD" * 32
    p, findings = _plan(snap, offload_sha256="AB" * 32)
    assert p is None
    assert not only(findings, "SSTP_OFFLOAD_HASH").fixable


def test_iis_plus_expiring_certificate_combination() -> None:
    snap = with_iis_binding(use_sstp_cert(healthy(), cert(not_after=NOW + timedelta(days=10))))
    p, findings = _plan(snap)
    ids = {f.id: f for f in findings}
    assert {"IIS_HTTPS_BINDING", "SSTP_HASH_MISMATCH", "SSTP_CERT_EXPIRING"} <= set(ids)
    assert ids["IIS_HTTPS_BINDING"].fixable and not ids["SSTP_CERT_EXPIRING"].fixable
    assert _actions(p)[-1] == "bind_sstp_certificate"


def test_name_mismatch_binds_the_matching_certificate() -> None:
    snap = use_sstp_cert(healthy(), machine_cert(), rebind=True)
    snap["certificates"].append({**snap["certificates"][0]})  # harmless duplicate entry
    good = cert(common_name="*.example.com", dns_names=("*.example.com",))
    add_cert(snap, good)
    p, findings = _plan(snap)
    assert {"SSTP_CERT_EKU", "SSTP_CERT_NAME_MISMATCH"} <= {f.id for f in findings}
    assert p is not None and p.steps[-1].params == {"Thumbprint": good.thumbprint}


def test_no_public_name_replacement_must_cover_old_names() -> None:
    snap = use_sstp_cert(healthy(), cert(not_after=NOW - timedelta(days=1)))
    add_cert(snap, cert(common_name="mail.example.com"))
    p, _ = _plan(snap, public_name=None)
    assert p is None


# --- fingerprint -----------------------------------------------------------------------------------


def test_fingerprint_stable_across_volatile_changes() -> None:
    a = with_iis_binding(healthy())
    b = copy.deepcopy(a)
    b["collected_at"] = "2026-11-25T12:30:00Z"
    b["vpn_connections"] = 3
    b["events"] = [{"provider": "Microsoft-Windows-RasSstp", "id": 21, "time": "2026-11-25T12:10:00Z", "message": "x"}]
    b["http_sys"]["ip_bindings"].reverse()
    b["http_sys"]["ip_bindings"][0]["cert_hash"] = b["http_sys"]["ip_bindings"][0]["cert_hash"].lower()
    b["certificates"].reverse()
    b["listeners"].reverse()
    b["probe_errors"] = []
    assert fingerprint(parse_snapshot(a)) == fingerprint(parse_snapshot(b))


def test_fingerprint_changes_with_relevant_state() -> None:
    base = with_iis_binding(healthy())
    reference = fingerprint(parse_snapshot(base))
    changes = []
    s = copy.deepcopy(base)
    s["http_sys"]["ip_bindings"][0]["app_id"] = SSTP_APP_ID
    changes.append(s)
    s = copy.deepcopy(base)
    s["iis"]["https_bindings"] = []
    changes.append(s)
    s = copy.deepcopy(base)
    s["sstp"]["sha256_hash"] = iis_cert().sha256
    changes.append(s)
    s = copy.deepcopy(base)
    s["certificates"][0]["has_private_key"] = False
    changes.append(s)
    s = copy.deepcopy(base)
    s["services"]["RemoteAccess"]["status"] = "Stopped"
    changes.append(s)
    s = copy.deepcopy(base)
    s["http_sys"]["url_reservations"].append({"url": "https://+:443/x/", "sddl": None})
    changes.append(s)
    s = copy.deepcopy(base)
    s["listeners"][0]["pid"] = 1234
    changes.append(s)
    prints = {fingerprint(parse_snapshot(c)) for c in changes}
    assert reference not in prints and len(prints) == len(changes)


def test_plan_carries_fingerprint() -> None:
    snap = with_iis_binding(healthy())
    p, _ = _plan(snap)
    assert p is not None and p.fingerprint == fingerprint(parse_snapshot(snap))
    assert len(p.fingerprint) == 64


def test_sni_cleanup_does_not_rebind_or_touch_shared_bindings() -> None:
    snap = healthy()
    snap["http_sys"]["ip_bindings"][1]["app_id"] = IIS_APP_ID  # IIS owns [::]:443, same certificate (info)
    snap["http_sys"]["sni_bindings"].append(binding("vpn.example.com:443", iis_cert(), IIS_APP_ID))
    p, findings = _plan(snap)
    assert p is not None
    assert [(s.action, s.params) for s in p.steps] == [("delete_httpsys_binding", {"Endpoint": "vpn.example.com:443"})]
    assert not p.disruptive
    assert not only(findings, "HTTPSYS_FOREIGN_BINDING").fixable


def test_registry_without_sha256_does_not_force_a_rebind() -> None:
    snap = healthy()
    snap["sstp"]["sha256_hash"] = None
    snap["http_sys"]["url_reservations"].append({"url": "https://+:443/", "sddl": None})
    p, _ = _plan(snap)
    assert _actions(p) == ["delete_url_reservation", "restart_remoteaccess"]


def test_a_wrong_specific_ip_binding_owned_by_sstp_is_deleted_without_rebinding() -> None:
    snap = healthy()
    snap["http_sys"]["ip_bindings"].append(
        {"endpoint": "10.0.0.5:443", "cert_hash": "AB" * 20, "app_id": SSTP_APP_ID, "store": "MY", "ctl_store": None}
    )
    findings = diagnose(parse_snapshot(snap), server(), NOW)
    assert "SSTP_HASH_MISMATCH" not in {f.id for f in findings}  # DESIGN 4: the wildcard endpoints only
    finding = only(findings, "SSTP_IP_BINDING_MISMATCH")
    assert finding.severity == "critical" and finding.evidence["endpoint"] == "10.0.0.5:443"
    result = plan(parse_snapshot(snap), findings, server(), NOW)
    assert result is not None and finding.fixable
    assert [(s.action, s.params) for s in result.steps] == [("delete_httpsys_binding", {"Endpoint": "10.0.0.5:443"})]


# --- which certificate a renewal must cover: the names it is valid for (DESIGN 4 [2], RFC 6125) -----


def _display_name_cert(**kwargs: Any) -> Any:
    """A certificate whose CN is a display name and whose DNS SAN is the host name clients dial."""
    return cert(common_name="VPN Server", dns_names=("vpn.example.com",), **kwargs)


def test_renewal_of_a_certificate_with_a_display_name_cn_is_found() -> None:
    current = _display_name_cert(not_after=NOW + timedelta(days=200))
    renewal = _display_name_cert(not_after=NOW + timedelta(days=600))
    snap = add_cert(use_sstp_cert(healthy(), current), renewal)
    p, findings = _plan(snap)
    assert only(findings, "SSTP_CERT_RENEWAL_NOT_BOUND").fixable
    assert p is not None and p.steps[-1].params == {"Thumbprint": renewal.thumbprint}


def test_expired_display_name_certificate_without_public_name_is_replaced_by_its_renewal() -> None:
    current = _display_name_cert(not_before=NOW - timedelta(days=400), not_after=NOW - timedelta(days=1))
    renewal = _display_name_cert(not_after=NOW + timedelta(days=400))
    snap = add_cert(use_sstp_cert(healthy(), current), renewal)
    p, findings = _plan(snap, public_name=None)
    assert only(findings, "SSTP_CERT_EXPIRED").fixable and only(findings, "SSTP_CERT_RENEWAL_NOT_BOUND").fixable
    assert p is not None and p.steps[-1].params == {"Thumbprint": renewal.thumbprint}


def test_a_renewal_must_cover_the_dns_names_not_the_display_name() -> None:
    """Near misses: the same display name with another DNS name, or the host name only in the CN of a
    certificate whose DNS SAN says otherwise (clients ignore that CN), is no renewal."""
    current = _display_name_cert(not_before=NOW - timedelta(days=400), not_after=NOW - timedelta(days=1))
    snap = use_sstp_cert(healthy(), current)
    add_cert(snap, cert(common_name="VPN Server", dns_names=("mail.example.com",), not_after=NOW + timedelta(days=400)))
    add_cert(snap, cert(common_name="vpn.example.com", dns_names=("mail.example.com",), not_after=NOW + timedelta(days=400)))
    p, findings = _plan(snap, public_name=None)
    assert p is None and "SSTP_CERT_RENEWAL_NOT_BOUND" not in {f.id for f in findings}
    assert not only(findings, "SSTP_CERT_EXPIRED").fixable


def test_a_certificate_without_dns_sans_is_renewed_on_its_cn() -> None:
    current = cert(common_name="vpn.example.com", dns_names=(), not_after=NOW + timedelta(days=200))
    renewal = cert(common_name="VPN Server", dns_names=("vpn.example.com",), not_after=NOW + timedelta(days=600))
    snap = add_cert(use_sstp_cert(healthy(), current), renewal)
    p, findings = _plan(snap)
    assert only(findings, "SSTP_CERT_RENEWAL_NOT_BOUND").fixable
    assert p is not None and p.steps[-1].params == {"Thumbprint": renewal.thumbprint}


# --- SSTP identified by its SHA-256 alone (DESIGN 4: "SSTP certificate") --------------------------------


def _sha256_only_certificate_gone(snap: Snap) -> Snap:
    """SSTP names its certificate by SHA-256 only and that certificate left the store; both wildcard
    bindings carry the IIS certificate, which is in the store."""
    snap["sstp"]["sha1_hash"] = None
    snap["sstp"]["remote_access"]["thumbprint"] = None
    snap["certificates"] = [e for e in snap["certificates"] if e["thumbprint"] != sstp_cert().thumbprint]
    add_cert(snap, iis_cert())
    snap["http_sys"]["ip_bindings"] = [binding("0.0.0.0:443", iis_cert()), binding("[::]:443", iis_cert())]
    return snap


def test_hash_mismatch_is_found_by_sha256_when_no_sha1_is_configured() -> None:
    findings = diagnose(parse_snapshot(_sha256_only_certificate_gone(healthy())), server(), NOW)
    f = only(findings, "SSTP_HASH_MISMATCH")
    assert f.severity == "critical" and f.evidence["sstp_sha256_hash"] == sstp_cert().sha256
    assert [b["endpoint"] for b in f.evidence["bindings"]] == ["0.0.0.0:443", "[::]:443"]
    assert "SSTP_CERT_NOT_FOUND" in {x.id for x in findings}


def test_binding_of_an_unknown_certificate_is_no_mismatch_when_only_sha256_is_known() -> None:
    """Near miss: a binding whose certificate is not in the store either may be SSTP's own (deleted)
    certificate; by its SHA-1 alone the bot cannot tell, so it does not claim a mismatch."""
    snap = _sha256_only_certificate_gone(healthy())
    snap["http_sys"]["ip_bindings"] = [binding("0.0.0.0:443", sstp_cert()), binding("[::]:443", sstp_cert())]
    findings = diagnose(parse_snapshot(snap), server(), NOW)
    assert "SSTP_HASH_MISMATCH" not in {f.id for f in findings}


def test_a_bound_certificate_the_bot_cannot_read_is_no_mismatch_when_only_sha256_is_known() -> None:
    """Near miss: SSTP named by SHA-256 only, its certificate in the store but sent without DER (so its
    SHA-256 is unknown), and bound on both wildcards: the bot cannot tell it is another certificate."""
    snap = healthy()
    snap["sstp"]["sha1_hash"] = None
    snap["sstp"]["remote_access"]["thumbprint"] = None
    for entry in snap["certificates"]:
        if entry["thumbprint"] == sstp_cert().thumbprint:
            entry["der"] = None
    snap["http_sys"]["ip_bindings"] = [binding("0.0.0.0:443", sstp_cert()), binding("[::]:443", sstp_cert())]
    findings = diagnose(parse_snapshot(snap), server(), NOW)
    assert "SSTP_HASH_MISMATCH" not in {f.id for f in findings}


def test_without_public_name_or_sstp_certificate_no_certificate_for_another_name_is_bound() -> None:
    p, findings = _plan(_sha256_only_certificate_gone(healthy()), public_name=None)
    assert p is None
    for fid in ("SSTP_CERT_NOT_FOUND", "SSTP_HASH_MISMATCH"):
        f = only(findings, fid)
        assert not f.fixable and "public_name" in f.detail


def test_sha256_only_mismatch_with_public_name_binds_a_certificate_for_that_name() -> None:
    snap = _sha256_only_certificate_gone(healthy())
    good = cert(not_after=NOW + timedelta(days=400))
    add_cert(snap, good)
    p, findings = _plan(snap)
    assert only(findings, "SSTP_HASH_MISMATCH").fixable and only(findings, "SSTP_CERT_NOT_FOUND").fixable
    assert _actions(p) == ["delete_httpsys_binding", "delete_httpsys_binding", "bind_sstp_certificate"]
    assert p is not None and p.steps[-1].params == {"Thumbprint": good.thumbprint}
