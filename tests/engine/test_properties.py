"""Property tests: diagnose never raises on schema-valid snapshots; plans only touch what exists."""

from __future__ import annotations

import base64
import json
from datetime import timedelta
from functools import cache
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from commands.analysis import analyse
from commands.diagnosis import ALL_FINDING_IDS, IIS_APP_ID, SSTP_APP_ID, diagnose
from commands.engine import evaluate
from commands.lab.pki import IssuedCertificate
from commands.remediation import plan
from commands.scripts import validate_params
from commands.snapshot import parse_snapshot
from tests.engine.builder import ADFS_APP_ID, NOW, SSTP_URL, cert, iis_cert, machine_cert, server, sstp_cert


@cache
def pool() -> tuple[IssuedCertificate, ...]:
    return (
        sstp_cert(),
        iis_cert(),
        machine_cert(),
        cert(not_before=NOW - timedelta(days=400), not_after=NOW - timedelta(days=1)),
        cert(not_after=NOW + timedelta(days=5)),
        cert(not_after=NOW + timedelta(days=5000)),
        cert(key_size=1024),
        cert(signature_hash="sha1", crl_url=None, ocsp_url=None),
        cert(include_eku=False),
        cert(common_name="*.example.com", dns_names=("*.example.com",), key="ec"),
        cert(common_name="vpn.example.org"),
    )


def _thumbprints() -> st.SearchStrategy[str | None]:
    thumbprints = [c.thumbprint for c in pool()]
    return st.one_of(st.none(), st.just("AB" * 20), st.sampled_from(thumbprints + [t.lower() for t in thumbprints[:3]]))


ENDPOINTS = ["0.0.0.0:443", "[::]:443", "10.0.0.5:443", "0.0.0.0:8443", "[::]:8443"]
APP_IDS = [SSTP_APP_ID, SSTP_APP_ID.upper(), IIS_APP_ID, ADFS_APP_ID, "{00000000-0000-0000-0000-000000000000}", None]


@st.composite
def snapshots(draw: st.DrawFn) -> dict[str, Any]:
    certs = pool()
    chosen = draw(st.lists(st.sampled_from(range(len(certs))), unique=True, max_size=6))
    entries = [
        {
            "thumbprint": certs[i].thumbprint,
            "has_private_key": draw(st.booleans()),
            "friendly_name": draw(st.sampled_from(["", "VPN", None])),
            "der": base64.b64encode(certs[i].der).decode(),
        }
        for i in chosen
    ]

    def binding(endpoints: list[str]) -> st.SearchStrategy[dict[str, Any]]:
        return st.fixed_dictionaries(
            {
                "endpoint": st.sampled_from(endpoints),
                "cert_hash": _thumbprints(),
                "app_id": st.sampled_from(APP_IDS),
                "store": st.sampled_from(["MY", None]),
                "ctl_store": st.sampled_from([None, "AdfsTrustedDevices"]),
            }
        )

    service = st.one_of(
        st.none(),
        st.fixed_dictionaries(
            {
                "status": st.sampled_from(["Running", "Stopped", "StartPending", 4, 1]),
                "start_type": st.sampled_from(["Automatic", "Manual", "Disabled", None]),
            },
            # Optional in snapshot v1: absent, null, or when the service (its process) started.
            optional={"started_at": st.sampled_from([None, "2026-11-25T11:30:00Z", "2026-11-20T00:00:00Z"])},
        ),
    )
    sha256 = draw(st.one_of(st.none(), st.just("CD" * 32), st.sampled_from([c.sha256 for c in certs])))
    sha1 = draw(_thumbprints())
    http_sys = draw(
        st.one_of(
            st.none(),
            st.fixed_dictionaries(
                {
                    "ip_bindings": st.one_of(st.none(), st.lists(binding(ENDPOINTS), max_size=5)),
                    "sni_bindings": st.lists(binding(["vpn.example.com:443", "www.example.com:8443", "*.example.com:443"]), max_size=2),
                    "url_reservations": st.lists(
                        st.fixed_dictionaries(
                            {
                                "url": st.sampled_from(
                                    [SSTP_URL, "https://+:443/adfs/", "http://+:8443/", "https://*:443/", "http://+:80/", "bogus"]
                                ),
                                "sddl": st.sampled_from([None, "D:(A;;GX;;;WD)"]),
                            }
                        ),
                        max_size=3,
                    ),
                }
            ),
        )
    )
    iis = draw(
        st.one_of(
            st.none(),
            st.fixed_dictionaries(
                {
                    "installed": st.sampled_from([True, False, None]),
                    "https_bindings": st.one_of(
                        st.none(),
                        st.lists(
                            st.fixed_dictionaries(
                                {
                                    "site": st.sampled_from(["Default Web Site", "Intranet", 'bad"site']),
                                    "binding_information": st.sampled_from(
                                        ["*:443:", "*:8443:", "10.0.0.5:443:vpn.example.com", "[::1]:443:", "weird", "*:443:bad host!"]
                                    ),
                                    "cert_hash": _thumbprints(),
                                    "ssl_flags": st.sampled_from([0, 1, None]),
                                }
                            ),
                            max_size=3,
                        ),
                    ),
                }
            ),
        )
    )
    listeners = draw(
        st.one_of(
            st.none(),
            st.lists(
                st.fixed_dictionaries(
                    {
                        "local_address": st.sampled_from(["0.0.0.0", "::", None]),
                        "port": st.sampled_from([443, 8443, 80]),
                        "pid": st.sampled_from([4, 4, 4, 1234, None]),
                        "process": st.sampled_from(["System", "nginx", None]),
                    }
                ),
                max_size=4,
            ),
        )
    )
    events = draw(
        st.one_of(
            st.none(),
            st.lists(
                st.fixed_dictionaries(
                    {
                        "provider": st.sampled_from(["Microsoft-Windows-RasSstp", "RasSstp", "Schannel", "Other"]),
                        "id": st.sampled_from([8, 9, 12, 13, 18, 20, 21, 36870, 36887]),
                        "time": st.sampled_from(
                            ["2026-11-25T11:00:00Z", "2026-11-20T11:00:00Z", "2026-11-25T13:00:00+01:00", "2026-11-26T00:00:00Z"]
                        ),
                        "message": st.sampled_from([None, "", "x" * 500]),
                    }
                ),
                max_size=4,
            ),
        )
    )
    return {
        "schema": "sstp-bot/snapshot/v1",
        "collected_at": "2026-11-25T12:00:00Z",
        "host": {
            "computer_name": draw(st.sampled_from(["VPN01", None])),
            "os_caption": None,
            "os_build": "20348",
            "ps_version": "5.1",
            "is_admin": draw(st.sampled_from([True, True, False, None])),
        },
        "services": draw(st.one_of(st.none(), st.fixed_dictionaries({"RemoteAccess": service, "W3SVC": service}))),
        "sstp": draw(
            st.one_of(
                st.none(),
                st.fixed_dictionaries(
                    {
                        "sha256_hash": st.just(sha256),
                        "sha1_hash": st.just(sha1),
                        "use_https": st.sampled_from([True, True, False, None]),
                        "is_hash_configured_by_admin": st.sampled_from([True, False, None]),
                        "listener_port": st.sampled_from([443, 443, 8443, None]),
                        "remote_access": st.one_of(
                            st.none(),
                            st.fixed_dictionaries(
                                {"vpn_status": st.just("Installed"), "thumbprint": _thumbprints()},
                                optional={"directaccess": st.sampled_from([None, False, True])},
                            ),
                        ),
                    }
                ),
            )
        ),
        "http_sys": http_sys,
        "iis": iis,
        "listeners": listeners,
        "certificates": draw(st.one_of(st.just(entries), st.none())),
        "vpn_connections": draw(st.sampled_from([None, 0, 7])),
        "events": events,
        "probe_errors": draw(st.sampled_from([[], [{"section": "iis", "message": "denied"}]])),
    }


SERVERS = st.sampled_from(
    [
        server(),
        server(public_name=None),
        server(public_name="vpn.example.org", cert_expiry_warning_days=60),
        server(offload_sha256="CD" * 32),
    ]
)
ORDER = ["remove_iis_binding", "restart_iis", "delete_httpsys_binding", "delete_url_reservation",
         "bind_sstp_certificate", "restart_remoteaccess"]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(snapshots(), SERVERS)
def test_diagnose_and_plan_are_total_and_grounded(raw: dict[str, Any], srv: Any) -> None:
    snapshot = parse_snapshot(raw)
    findings = diagnose(snapshot, srv, NOW)
    for f in findings:
        assert f.id in ALL_FINDING_IDS
        assert f.severity in ("critical", "warning", "info")
        assert f.title and f.detail
        json.dumps(f.to_json())
    p = plan(snapshot, findings, srv, NOW)
    assert (p is not None) == any(f.fixable for f in findings)
    if p is None:
        return
    assert snapshot.host.is_admin is not False
    assert "PORT_OWNED_BY_OTHER_PROCESS" not in {f.id for f in findings}
    iis = {(b["site"], b["binding_information"]) for b in ((raw["iis"] or {}).get("https_bindings") or [])}
    http_sys = raw["http_sys"] or {}
    endpoints = {b["endpoint"] for b in (http_sys.get("ip_bindings") or []) + (http_sys.get("sni_bindings") or [])}
    urls = {r["url"] for r in http_sys.get("url_reservations") or []}
    keyed = {c["thumbprint"] for c in raw["certificates"] or [] if c["has_private_key"]}
    actions = [s.action for s in p.steps]
    assert actions == sorted(actions, key=ORDER.index)
    assert not ("bind_sstp_certificate" in actions and "restart_remoteaccess" in actions)
    assert actions.count("restart_iis") <= 1
    assert ("restart_iis" in actions) == ("remove_iis_binding" in actions)
    for step in p.steps:
        assert validate_params(step.action, dict(step.params)) == step.params
        assert step.disruptive == (step.action in ("bind_sstp_certificate", "restart_remoteaccess"))
        if step.action == "remove_iis_binding":
            assert (step.params["Site"], step.params["BindingInformation"]) in iis
        elif step.action == "delete_httpsys_binding":
            assert step.params["Endpoint"] in endpoints
        elif step.action == "delete_url_reservation":
            assert step.params["Url"] in urls
        elif step.action == "bind_sstp_certificate":
            assert step.params["Thumbprint"] in keyed
    # Never worse off (DESIGN 5 [2]): a plan that deletes a wildcard binding of the SSTP port binds a
    # certificate afterwards (RRAS recreates the wildcard bindings); under DirectAccess only the one
    # SSTP already uses (DESIGN 4 [2]).
    sstp = raw["sstp"] or {}
    port = sstp.get("listener_port") or 443
    if any(s.action == "delete_httpsys_binding" and s.params["Endpoint"] in (f"0.0.0.0:{port}", f"[::]:{port}")
           for s in p.steps):
        assert "bind_sstp_certificate" in actions
    if (sstp.get("remote_access") or {}).get("directaccess"):
        current = analyse(snapshot, srv, NOW).sstp_certificate
        assert "delete_url_reservation" not in actions
        assert all(current is not None and s.params["Thumbprint"] == current.thumbprint
                   for s in p.steps if s.action == "bind_sstp_certificate")
    json.dumps(p.to_json())


@settings(max_examples=100, deadline=None)
@given(st.one_of(st.text(max_size=200), st.binary(max_size=200), st.dictionaries(st.text(max_size=5), st.integers())))
def test_evaluate_never_raises_on_garbage(raw: Any) -> None:
    result = evaluate(raw, server(), NOW)
    assert result.status == "error" and result.error_kind == "bad_output"
    assert json.loads(json.dumps(result.to_json()))["error"]["kind"] == "bad_output"


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(snapshots(), st.randoms(use_true_random=False))
def test_fingerprint_ignores_order_and_volatile_data(raw: dict[str, Any], rnd: Any) -> None:
    from commands.remediation import fingerprint

    other = json.loads(json.dumps(raw))
    other["collected_at"] = "2026-11-25T12:05:00Z"
    other["vpn_connections"] = 99
    other["events"] = []
    remote_access = (other["services"] or {}).get("RemoteAccess")
    if remote_access is not None:
        remote_access["started_at"] = "2026-11-25T11:59:00Z"  # a restart alone changes no plan input
    for path in (("http_sys", "ip_bindings"), ("http_sys", "sni_bindings"), ("http_sys", "url_reservations"),
                 ("iis", "https_bindings"), ("listeners",), ("certificates",)):
        node: Any = other
        for key in path[:-1]:
            node = node.get(key) if isinstance(node, dict) else None
        if isinstance(node, dict) and isinstance(node.get(path[-1]), list):
            rnd.shuffle(node[path[-1]])
    assert fingerprint(parse_snapshot(raw)) == fingerprint(parse_snapshot(other))
