"""The remediation plan of DESIGN section 5 as shown by `diagnose --json` (DESIGN 7)."""

from __future__ import annotations

import re
from datetime import timedelta

from cryptography.x509.oid import ExtendedKeyUsageOID

from tests.contract_findings.helpers import (
    IIS_APPID,
    NOW,
    SSTP_APPID,
    binding,
    clone,
    diagnose,
    healthy,
    iis_binding,
    iso,
    main_cert,
    make_cert,
    other_cert,
)

KNOWN_ACTIONS = {
    "remove_iis_binding": {"Site", "BindingInformation"},
    "restart_iis": set(),
    "delete_httpsys_binding": {"Endpoint"},
    "delete_url_reservation": {"Url"},
    "bind_sstp_certificate": {"Thumbprint", "RestartTimeoutSeconds"},
    "restart_remoteaccess": {"RestartTimeoutSeconds"},
}


def check_plan_shape(plan: dict) -> None:
    assert set(plan) >= {"steps", "fingerprint"}
    assert re.fullmatch(r"[0-9a-fA-F]{64}", plan["fingerprint"])
    assert plan["steps"]
    for step in plan["steps"]:
        assert set(step) >= {"action", "params", "description", "disruptive"}
        assert step["action"] in KNOWN_ACTIONS, step
        assert set(step["params"]) <= KNOWN_ACTIONS[step["action"]], step
        assert isinstance(step["description"], str) and step["description"]
        assert isinstance(step["disruptive"], bool)
        if step["action"] == "bind_sstp_certificate":
            assert re.fullmatch(r"[0-9A-F]{40}", step["params"]["Thumbprint"])
            assert step["disruptive"] is True
        if step["action"] in ("remove_iis_binding", "restart_iis"):
            assert step["disruptive"] is False


def iis_caused(port: int = 443) -> dict:
    """The seed's error: IIS has an https binding on the SSTP port and owns both wildcard bindings."""
    snap = healthy(port=port)
    www = other_cert()
    snap["certificates"].append(www.entry())
    snap["iis"]["https_bindings"] = [iis_binding(www.sha1, f"*:{port}:")]
    snap["http_sys"]["ip_bindings"] = [
        binding(f"0.0.0.0:{port}", www.sha1, IIS_APPID),
        binding(f"[::]:{port}", www.sha1, IIS_APPID),
    ]
    snap["events"] = []
    return snap


def test_iis_caused_plan_steps_and_order():
    r = diagnose(iis_caused())
    assert {"SSTP_HASH_MISMATCH", "IIS_HTTPS_BINDING"} <= r.ids()
    check_plan_shape(r.plan)
    assert r.actions() == [
        "remove_iis_binding",
        "restart_iis",
        "delete_httpsys_binding",
        "delete_httpsys_binding",
        "bind_sstp_certificate",
    ]
    assert r.steps("remove_iis_binding")[0]["params"] == {
        "Site": "Default Web Site",
        "BindingInformation": "*:443:",
    }
    assert {s["params"]["Endpoint"] for s in r.steps("delete_httpsys_binding")} == {"0.0.0.0:443", "[::]:443"}
    assert r.steps("bind_sstp_certificate")[0]["params"]["Thumbprint"] == main_cert().sha1
    for fid in ("SSTP_HASH_MISMATCH", "IIS_HTTPS_BINDING", "HTTPSYS_FOREIGN_BINDING"):
        assert all(f["fixable"] for f in r.get(fid)), fid


def test_iis_caused_plan_on_custom_port_uses_that_port():
    r = diagnose(iis_caused(8443))
    assert r.steps("remove_iis_binding")[0]["params"]["BindingInformation"] == "*:8443:"
    assert {s["params"]["Endpoint"] for s in r.steps("delete_httpsys_binding")} == {
        "0.0.0.0:8443",
        "[::]:8443",
    }


def test_several_iis_bindings_all_removed_before_restart():
    snap = iis_caused()
    www = other_cert()
    snap["iis"]["https_bindings"].append(iis_binding(www.sha1, "*:443:intranet.example.com", site="Intranet"))
    r = diagnose(snap)
    acts = r.actions()
    removes = [i for i, a in enumerate(acts) if a == "remove_iis_binding"]
    assert len(removes) == 2
    assert acts.count("restart_iis") == 1
    assert max(removes) < acts.index("restart_iis") < acts.index("delete_httpsys_binding")
    assert {
        (s["params"]["Site"], s["params"]["BindingInformation"]) for s in r.steps("remove_iis_binding")
    } == {
        ("Default Web Site", "*:443:"),
        ("Intranet", "*:443:intranet.example.com"),
    }


def test_foreign_ipv6_binding_deleted_sstp_ipv4_binding_left_alone():
    snap = healthy()
    www = other_cert()
    snap["certificates"].append(www.entry())
    snap["http_sys"]["ip_bindings"][1] = binding("[::]:443", www.sha1, IIS_APPID)
    r = diagnose(snap)
    check_plan_shape(r.plan)
    assert [s["params"]["Endpoint"] for s in r.steps("delete_httpsys_binding")] == ["[::]:443"]
    acts = r.actions()
    assert acts.index("delete_httpsys_binding") < acts.index("bind_sstp_certificate")


def test_sstp_binding_with_target_cert_left_alone_whatever_appid_case():
    snap = healthy()
    www = other_cert()
    snap["certificates"].append(www.entry())
    snap["http_sys"]["ip_bindings"][0]["app_id"] = SSTP_APPID.upper()
    snap["http_sys"]["ip_bindings"][0]["cert_hash"] = main_cert().sha1.lower()
    snap["http_sys"]["ip_bindings"][1] = binding("[::]:443", www.sha1, IIS_APPID)
    r = diagnose(snap)
    assert [s["params"]["Endpoint"] for s in r.steps("delete_httpsys_binding")] == ["[::]:443"]


def test_sstp_owned_binding_with_wrong_cert_is_deleted_too():
    """'whoever owns it': a netsh-made SSTP-AppId binding with another certificate is deleted."""
    snap = healthy()
    www = other_cert()
    snap["certificates"].append(www.entry())
    for b in snap["http_sys"]["ip_bindings"]:
        b["cert_hash"] = www.sha1
    r = diagnose(snap)
    assert r.actions() == ["delete_httpsys_binding", "delete_httpsys_binding", "bind_sstp_certificate"]
    assert r.steps("bind_sstp_certificate")[0]["params"]["Thumbprint"] == main_cert().sha1


def test_missing_binding_plan_binds_without_deleting_good_one():
    snap = healthy()
    snap["http_sys"]["ip_bindings"] = snap["http_sys"]["ip_bindings"][:1]
    r = diagnose(snap)
    assert r.actions() == ["bind_sstp_certificate"]
    assert r.steps("bind_sstp_certificate")[0]["params"]["Thumbprint"] == main_cert().sha1


def test_expired_cert_best_candidate_is_chosen_and_old_bindings_deleted():
    expired = make_cert(nb_days=-400, na_days=-1, tag="exp")
    good_200 = make_cert(na_days=200, tag="c200")
    best_250 = make_cert(na_days=250, tag="c250")
    no_key_300 = make_cert(na_days=300, tag="c300")
    wrong_name_400 = make_cert("x.example.com", ("x.example.com",), na_days=400, tag="c400")
    client_only_500 = make_cert(na_days=500, eku=(ExtendedKeyUsageOID.CLIENT_AUTH,), tag="c500")
    future_600 = make_cert(nb_days=3, na_days=600, tag="c600")
    snap = healthy(
        expired,
        extra_certs=[
            good_200.entry(),
            no_key_300.entry(has_private_key=False),
            wrong_name_400.entry(),
            client_only_500.entry(),
            best_250.entry(),
            future_600.entry(),
        ],
    )
    r = diagnose(snap)
    f = r.get("SSTP_CERT_EXPIRED")[0]
    assert f["severity"] == "critical" and f["fixable"] is True
    check_plan_shape(r.plan)
    assert r.steps("bind_sstp_certificate")[0]["params"]["Thumbprint"] == best_250.sha1
    assert {s["params"]["Endpoint"] for s in r.steps("delete_httpsys_binding")} == {"0.0.0.0:443", "[::]:443"}
    acts = r.actions()
    assert acts[-1] == "bind_sstp_certificate"


def test_expired_cert_wildcard_candidate_matches_public_name():
    expired = make_cert(nb_days=-400, na_days=-1, tag="exp")
    wildcard = make_cert("*.example.com", ("*.example.com",), na_days=500, tag="wild500")
    other_name = make_cert("www.example.org", ("www.example.org",), na_days=700, tag="org700")
    snap = healthy(expired, extra_certs=[other_name.entry(), wildcard.entry()])
    r = diagnose(snap)
    assert r.steps("bind_sstp_certificate")[0]["params"]["Thumbprint"] == wildcard.sha1


def test_expired_cert_without_candidate_gets_no_plan():
    r = diagnose(healthy(make_cert(nb_days=-400, na_days=-1, tag="exp")))
    assert r.plan is None
    assert r.get("SSTP_CERT_EXPIRED")[0]["fixable"] is False
    assert r.code == 1


def test_expired_cert_only_unusable_candidates_gets_no_plan():
    expired = make_cert(nb_days=-400, na_days=-1, tag="exp")
    snap = healthy(
        expired,
        extra_certs=[
            make_cert(na_days=300, tag="c300").entry(has_private_key=False),
            make_cert("x.example.com", ("x.example.com",), na_days=400, tag="c400").entry(),
            make_cert(na_days=500, eku=(ExtendedKeyUsageOID.CLIENT_AUTH,), tag="c500").entry(),
            make_cert(nb_days=-400, na_days=-2, tag="exp2").entry(),
        ],
    )
    r = diagnose(snap)
    assert r.plan is None
    assert not any(f["fixable"] for f in r.findings)


def test_renewal_plan_binds_the_newer_certificate():
    new = make_cert(nb_days=-1, na_days=390, tag="renewed")
    r = diagnose(healthy(extra_certs=[new.entry()]))
    assert r.steps("bind_sstp_certificate")[0]["params"]["Thumbprint"] == new.sha1
    acts = r.actions()
    assert all(
        i < acts.index("bind_sstp_certificate") for i, a in enumerate(acts) if a == "delete_httpsys_binding"
    )
    assert {s["params"]["Endpoint"] for s in r.steps("delete_httpsys_binding")} == {"0.0.0.0:443", "[::]:443"}


def test_cert_not_found_with_valid_candidate_binds_it():
    snap = healthy()
    gone = make_cert(tag="gone")
    snap["sstp"]["sha256_hash"] = gone.sha256
    snap["sstp"]["sha1_hash"] = gone.sha1
    snap["sstp"]["remote_access"]["thumbprint"] = gone.sha1
    snap["http_sys"]["ip_bindings"] = []
    r = diagnose(snap)
    assert r.get("SSTP_CERT_NOT_FOUND")[0]["fixable"] is True
    assert r.steps("bind_sstp_certificate")[0]["params"]["Thumbprint"] == main_cert().sha1


def test_foreign_process_gets_guidance_not_plan():
    snap = healthy()
    snap["listeners"] = [{"local_address": "0.0.0.0", "port": 443, "pid": 3120, "process": "nginx"}]
    r = diagnose(snap)
    assert r.plan is None
    assert r.get("PORT_OWNED_BY_OTHER_PROCESS")[0]["fixable"] is False


def test_not_elevated_gets_no_plan_even_with_fixable_problem():
    snap = iis_caused()
    snap["host"]["is_admin"] = False
    r = diagnose(snap)
    assert "NOT_ELEVATED" in r.ids()
    assert r.plan is None
    assert not any(f["fixable"] for f in r.findings), r.findings


def test_url_reservation_conflict_plan_deletes_only_the_foreign_url():
    snap = healthy()
    snap["http_sys"]["url_reservations"].append({"url": "https://+:443/", "sddl": "D:(A;;GX;;;WD)"})
    r = diagnose(snap)
    check_plan_shape(r.plan)
    assert [s["params"]["Url"] for s in r.steps("delete_url_reservation")] == ["https://+:443/"]


def test_remoteaccess_stopped_plan_restarts_it():
    snap = healthy()
    snap["services"]["RemoteAccess"]["status"] = "Stopped"
    snap["listeners"] = []
    r = diagnose(snap)
    check_plan_shape(r.plan)
    assert "restart_remoteaccess" in r.actions()


def test_healthy_with_info_findings_has_no_plan():
    snap = healthy()
    snap["iis"]["https_bindings"] = [iis_binding(main_cert().sha1)]
    snap["http_sys"]["ip_bindings"][1]["app_id"] = IIS_APPID
    r = diagnose(snap)
    assert r.json["status"] == "healthy"
    assert r.plan is None


def test_fingerprint_stable_for_unchanged_state_and_changes_with_bindings():
    snap = iis_caused()
    a = diagnose(snap).plan["fingerprint"]
    later = clone(snap)
    later["collected_at"] = iso(NOW - timedelta(minutes=2))
    later["vpn_connections"] = 3
    assert diagnose(later).plan["fingerprint"] == a
    changed = clone(snap)
    changed["http_sys"]["ip_bindings"][1]["cert_hash"] = main_cert().sha1
    changed["http_sys"]["ip_bindings"][1]["app_id"] = SSTP_APPID
    assert diagnose(changed).plan["fingerprint"] != a
