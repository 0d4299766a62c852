"""Snapshot v1 parsing: normalisation, nulls, and clear errors for malformed input."""

from __future__ import annotations

import base64
import json
import time

import pytest

from commands.diagnosis import diagnose
from commands.errors import SnapshotError
from commands.snapshot import MAX_SNAPSHOT_BYTES, parse_snapshot
from tests.engine.builder import NOW, healthy, only, server, sstp_cert


def _error(raw: object) -> SnapshotError:
    with pytest.raises(SnapshotError) as info:
        parse_snapshot(raw)  # type: ignore[arg-type]
    return info.value


def test_parses_healthy_from_text_bytes_and_mapping() -> None:
    snap = healthy()
    text = json.dumps(snap)
    for raw in (snap, text, text.encode(), b"\xef\xbb\xbf" + text.encode(), text.encode("utf-16")):
        parsed = parse_snapshot(raw)
        assert parsed.sstp is not None and parsed.sstp.port == 443
        assert parsed.raw == snap


def test_normalises_hex_and_app_ids() -> None:
    snap = healthy()
    b = snap["http_sys"]["ip_bindings"][0]
    b["cert_hash"] = " " + b["cert_hash"].lower() + "\u200e"
    b["app_id"] = "BA195980-CD49-458B-9E23-C84EE0ADCD75"
    parsed = parse_snapshot(snap)
    assert parsed.http_sys is not None and parsed.http_sys.ip_bindings is not None
    first = parsed.http_sys.ip_bindings[0]
    assert first.cert_hash == sstp_cert().thumbprint
    assert first.app_id == "{ba195980-cd49-458b-9e23-c84ee0adcd75}"


def test_certificate_analysis_comes_from_der() -> None:
    parsed = parse_snapshot(healthy())
    assert parsed.certificates is not None
    c = parsed.certificates[0]
    assert c.thumbprint == sstp_cert().thumbprint and c.sha256 == sstp_cert().sha256
    assert c.info is not None and c.info.dns_names == ("vpn.example.com",) and c.has_private_key


def test_null_sections_are_allowed() -> None:
    snap = healthy()
    snap["services"]["W3SVC"] = None
    snap["iis"] = None
    snap["listeners"] = None
    snap["events"] = None
    snap["vpn_connections"] = None
    snap["sstp"]["listener_port"] = None
    snap["probe_errors"] = [{"section": "iis", "message": "Get-WebBinding: access denied"}]
    parsed = parse_snapshot(snap)
    assert parsed.iis is None and parsed.port == 443
    findings = diagnose(parsed, server(), NOW)
    assert {f.id for f in findings} == {"PROBE_INCOMPLETE"}


def test_numeric_service_enums_are_understood() -> None:
    snap = healthy()
    snap["services"]["RemoteAccess"] = {"status": 4, "start_type": 2}
    parsed = parse_snapshot(snap)
    ra = parsed.service("remoteaccess")
    assert ra is not None and ra.running and ra.start_type == "Automatic"


def test_dotnet_seven_digit_fraction_times() -> None:
    snap = healthy()
    snap["collected_at"] = "2026-11-25T11:59:30.1234567Z"
    assert parse_snapshot(snap).collected_at.microsecond == 123456


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda s: s.pop("sstp"), "sstp"),
        (lambda s: s.pop("probe_errors"), "probe_errors"),
        (lambda s: s["host"].pop("is_admin"), "host.is_admin"),
        (lambda s: s["http_sys"]["ip_bindings"][1].pop("cert_hash"), "http_sys.ip_bindings[1].cert_hash"),
        (lambda s: s["http_sys"]["ip_bindings"][1].update(cert_hash=1234), "http_sys.ip_bindings[1].cert_hash"),
        (lambda s: s["http_sys"]["ip_bindings"][0].update(cert_hash="not hex!"), "http_sys.ip_bindings[0].cert_hash"),
        (lambda s: s["http_sys"]["ip_bindings"][0].update(endpoint="0.0.0.0"), "http_sys.ip_bindings[0].endpoint"),
        (lambda s: s["sstp"].update(listener_port="443"), "sstp.listener_port"),
        (lambda s: s["sstp"].update(listener_port=True), "sstp.listener_port"),
        (lambda s: s["sstp"].update(listener_port=70000), "sstp.listener_port"),
        (lambda s: s["sstp"].update(use_https="yes"), "sstp.use_https"),
        (lambda s: s.update(listeners={}), "listeners"),
        (lambda s: s["listeners"][0].update(pid="4"), "listeners[0].pid"),
        (lambda s: s.update(certificates=[1]), "certificates[0]"),
        (lambda s: s["certificates"][0].update(der="%%% not base64 %%%"), "certificates[0].der"),
        (lambda s: s["certificates"][1].update(has_private_key="true"), "certificates[1].has_private_key"),
        (lambda s: s["iis"]["https_bindings"].append({"site": "x"}), "iis.https_bindings[0].binding_information"),
        (lambda s: s.update(events=[{"provider": "RasSstp", "id": 18, "time": "yesterday", "message": ""}]), "events[0].time"),
        (lambda s: s.update(vpn_connections=-1), "vpn_connections"),
        (lambda s: s.update(schema="sstp-bot/snapshot/v2"), "schema"),
        (lambda s: s.update(host=[]), "host"),
        (lambda s: s.update(collected_at=None), "collected_at"),
    ],
)
def test_malformed_fields_are_named(mutate: object, field: str) -> None:
    snap = healthy()
    mutate(snap)  # type: ignore[operator]
    err = _error(snap)
    assert err.field == field, str(err)
    assert field in str(err)


def test_truncated_json() -> None:
    text = json.dumps(healthy())
    err = _error(text[: len(text) // 2])
    assert "not valid JSON" in err.message and "line 1" in err.message


@pytest.mark.parametrize("raw", ["", "   ", "[]", "null", "42", b"\xff\x00\xfe garbage", "{\"schema\": "])
def test_not_a_snapshot(raw: object) -> None:
    assert _error(raw).message


def test_oversized_input_refused_fast() -> None:
    big = b"{" + b" " * (MAX_SNAPSHOT_BYTES + 10) + b"}"
    started = time.perf_counter()
    err = _error(big)
    assert "larger than 10 MB" in err.message
    assert _error(big.decode()).message == err.message
    assert time.perf_counter() - started < 1.0


def test_deep_nesting_is_an_error_not_a_crash() -> None:
    assert _error("[" * 100_000 + "]" * 100_000).message


def test_unparsable_der_is_kept_and_reported() -> None:
    snap = healthy()
    junk = base64.b64encode(b"\x30\x03\x02\x01\x00").decode()
    snap["certificates"].append({"thumbprint": "AB" * 20, "has_private_key": True, "friendly_name": "odd", "der": junk})
    parsed = parse_snapshot(snap)
    assert parsed.certificates is not None
    odd = parsed.certificates[-1]
    assert odd.info is None and odd.error
    findings = diagnose(parsed, server(), NOW)
    unreadable = only(findings, "CERTIFICATE_UNREADABLE")
    assert unreadable.severity == "info"


def test_unparsable_sstp_certificate_is_a_warning() -> None:
    snap = healthy()
    junk = b"\x30\x03\x02\x01\x00"
    import hashlib

    snap["certificates"] = [{"thumbprint": None, "has_private_key": True, "friendly_name": "", "der": base64.b64encode(junk).decode()}]
    snap["sstp"]["sha256_hash"] = hashlib.sha256(junk).hexdigest()
    findings = diagnose(parse_snapshot(snap), server(), NOW)
    assert only(findings, "CERTIFICATE_UNREADABLE").severity == "warning"
    assert "SSTP_CERT_NOT_FOUND" not in {f.id for f in findings}


def test_snapshot_error_str_names_field() -> None:
    snap = healthy()
    snap["http_sys"]["ip_bindings"][1]["cert_hash"] = []
    assert "http_sys.ip_bindings[1].cert_hash" in str(_error(snap))


def test_an_unreadable_host_section_is_null_like_any_other() -> None:
    snap = healthy()
    snap["host"] = None
    snap["probe_errors"] = [{"section": "host", "message": "Get-CimInstance Win32_OperatingSystem: access denied"}]
    findings = diagnose(parse_snapshot(snap), server(), NOW)
    ids = {f.id for f in findings}
    assert "PROBE_INCOMPLETE" in ids and "NOT_ELEVATED" not in ids  # unknown is not "not elevated"
