"""Which bindings count for SSTP_HASH_MISMATCH, when it is fixable, and `diagnose` applying the
inventory's settings (expiry window, offload hash, public name) from the configuration."""

from __future__ import annotations

from pathlib import Path

from tests.contract_findings.helpers import (
    _TMP,
    binding,
    diagnose,
    diagnose_subprocess,
    healthy,
    main_cert,
    make_cert,
    other_cert,
)

CONFIG = """
[defaults]
username = "CORP\\\\svc-sstpbot"
password_env = "SSTP_BOT_WINRM_PASSWORD"
cert_expiry_warning_days = {days}

[servers.vpn01]
host = "vpn01.corp.example.com"
public_name = "{public}"
{offload}
"""


def config_file(days: int = 30, public: str = "vpn.example.com", offload: str | None = None) -> Path:
    path = _TMP / f"sstp-bot-{days}-{public}-{offload}.toml"
    path.write_text(
        CONFIG.format(days=days, public=public, offload=f'offload_sha256 = "{offload}"' if offload else "")
    )
    return path


def test_specific_ip_sstp_binding_is_not_a_hash_mismatch():
    snap = healthy()
    www = other_cert()
    snap["certificates"].append(www.entry())
    snap["http_sys"]["ip_bindings"].append(binding("10.0.0.5:443", www.sha1))
    assert "SSTP_HASH_MISMATCH" not in diagnose(snap).ids()


def test_hash_mismatch_fixed_by_plan_is_fixable():
    snap = healthy()
    gone = make_cert(tag="gone")
    snap["sstp"]["sha256_hash"] = gone.sha256
    snap["sstp"]["sha1_hash"] = gone.sha1
    snap["sstp"]["remote_access"]["thumbprint"] = gone.sha1
    r = diagnose(snap)
    assert r.steps("bind_sstp_certificate")[0]["params"]["Thumbprint"] == main_cert().sha1
    assert r.get("SSTP_CERT_NOT_FOUND")[0]["fixable"] is True
    mismatch = r.get("SSTP_HASH_MISMATCH")
    assert all(f["fixable"] for f in mismatch), mismatch


def test_diagnose_applies_configured_expiry_window():
    snap = healthy(make_cert(na_days=45, tag="45d"))
    cfg = config_file(days=60)
    r = diagnose_subprocess(snap, "--server-name", "vpn01", "--json", pre=("--config", str(cfg)))
    assert r.code == 1, r.out
    assert "SSTP_CERT_EXPIRING" in r.ids()


def test_diagnose_applies_configured_offload_hash():
    snap = healthy()
    snap["sstp"]["use_https"] = False
    snap["sstp"]["sha256_hash"] = make_cert(tag="lb-actual").sha256
    snap["sstp"]["sha1_hash"] = None
    snap["sstp"]["remote_access"]["thumbprint"] = None
    snap["http_sys"]["ip_bindings"] = []
    cfg = config_file(offload=make_cert(tag="lb-expected").sha256)
    r = diagnose_subprocess(snap, "--server-name", "vpn01", "--json", pre=("--config", str(cfg)))
    assert [f["severity"] for f in r.get("SSTP_OFFLOAD_HASH")] == ["critical"], r.out


def test_diagnose_configured_offload_hash_equal_is_fine():
    """Control for the test above: the same hash as configured must not raise SSTP_OFFLOAD_HASH."""
    lb = make_cert(tag="lb-actual")
    snap = healthy()
    snap["sstp"]["use_https"] = False
    snap["sstp"]["sha256_hash"] = lb.sha256
    snap["sstp"]["sha1_hash"] = None
    snap["sstp"]["remote_access"]["thumbprint"] = None
    snap["http_sys"]["ip_bindings"] = []
    cfg = config_file(offload=lb.sha256)
    r = diagnose_subprocess(snap, "--server-name", "vpn01", "--json", pre=("--config", str(cfg)))
    assert "SSTP_OFFLOAD_HASH" not in r.ids()
    assert r.code == 0


def test_diagnose_applies_configured_public_name():
    cfg = config_file(public="sstp.example.org")
    r = diagnose_subprocess(healthy(), "--server-name", "vpn01", "--json", pre=("--config", str(cfg)))
    assert "SSTP_CERT_NAME_MISMATCH" in r.ids()
