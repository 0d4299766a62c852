"""`diagnose --snapshot FILE [--server-name N] [--public-name NAME] [--json]` (DESIGN 3, 4, 7)."""
from __future__ import annotations

import json

import pytest

from .conftest import EXAMPLES, assert_check_shape, ids, parse_json

EXPECTED = {
    "healthy.json": (0, set()),
    "healthy-sstp-8443-iis-443.json": (0, set()),
    "iis-binding.json": (1, {"SSTP_HASH_MISMATCH", "IIS_HTTPS_BINDING"}),
    "foreign-binding.json": (1, {"SSTP_HASH_MISMATCH", "HTTPSYS_FOREIGN_BINDING"}),
    "cert-not-found.json": (1, {"SSTP_CERT_NOT_FOUND"}),
    "remoteaccess-stopped.json": (1, {"REMOTEACCESS_STOPPED"}),
    "renewal-not-bound.json": (1, {"SSTP_CERT_RENEWAL_NOT_BOUND"}),
    "url-reservation.json": (1, {"URLACL_CONFLICT"}),
}

SSTP_APPID = "{ba195980-cd49-458b-9e23-c84ee0adcd75}"
IIS_APPID = "{4dc3e181-e14b-4a21-b022-59fc669b0914}"


def diag(cli, path, *extra):
    return cli.run("diagnose", "--snapshot", str(path), *extra, config=None)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_examples(cli, name):
    rc, must = EXPECTED[name]
    p = diag(cli, EXAMPLES / name, "--json")
    assert p.returncode == rc, p.stdout + p.stderr
    obj = parse_json(p)
    assert_check_shape(obj)
    assert must <= ids(obj), ids(obj)
    assert obj["status"] == ("healthy" if rc == 0 else "unhealthy")
    if rc == 0:
        assert obj["plan"] is None


def test_all_examples_present():
    assert {p.name for p in EXAMPLES.glob("*.json")} >= set(EXPECTED)


def test_server_name_option(cli):
    p = diag(cli, EXAMPLES / "healthy.json", "--server-name", "vpn-x", "--json")
    assert p.returncode == 0
    assert parse_json(p)["server"] == "vpn-x"


def test_public_name_mismatch(cli):
    p = diag(cli, EXAMPLES / "healthy.json", "--public-name", "other.example.net", "--json")
    assert p.returncode == 1
    obj = parse_json(p)
    assert_check_shape(obj)
    f = {f["id"]: f for f in obj["findings"]}
    assert f["SSTP_CERT_NAME_MISMATCH"]["severity"] == "critical"


def test_public_name_match(cli):
    p = diag(cli, EXAMPLES / "healthy.json", "--public-name", "vpn.example.com", "--json")
    assert p.returncode == 0


def test_public_name_case_insensitive(cli):
    p = diag(cli, EXAMPLES / "healthy.json", "--public-name", "VPN.Example.COM", "--json")
    assert p.returncode == 0, p.stdout


def test_text_output(cli):
    p = diag(cli, EXAMPLES / "iis-binding.json")
    assert p.returncode == 1
    assert "SSTP_HASH_MISMATCH" in p.stdout


def test_needs_no_config(cli, tmp_path):
    p = cli.run("diagnose", "--snapshot", str(EXAMPLES / "healthy.json"), "--json", config=None,
                env=cli.env(SSTP_BOT_CONFIG=None), cwd=tmp_path)
    assert p.returncode == 0, p.stdout + p.stderr


def test_stdin(cli):
    p = cli.run("diagnose", "--snapshot", "-", "--json", config=None,
                stdin=(EXAMPLES / "iis-binding.json").read_text(encoding="utf-8"))
    # '-' for stdin is not in the contract; if accepted it must give the same answer
    if p.returncode != 3:
        assert p.returncode == 1
        assert "SSTP_HASH_MISMATCH" in ids(parse_json(p))


# --- modified snapshots -------------------------------------------------------------------------

def _base():
    return json.loads((EXAMPLES / "healthy.json").read_text(encoding="utf-8"))


def _write(tmp_path, snap, name="snap.json"):
    path = tmp_path / name
    path.write_text(json.dumps(snap), encoding="utf-8")
    return path


def _sstp_thumb(snap):
    return snap["sstp"]["sha1_hash"]


def _other_thumb(snap):
    return next(c["thumbprint"] for c in snap["certificates"] if c["thumbprint"] != _sstp_thumb(snap))


def m_not_elevated(s):
    s["host"]["is_admin"] = False


def m_probe_errors(s):
    s["probe_errors"] = [{"section": "iis", "message": "Get-WebBinding failed"}]


def m_stopped(s):
    s["services"]["RemoteAccess"]["status"] = "Stopped"
    s["listeners"] = []


def m_no_listener(s):
    s["listeners"] = []


def m_foreign_process(s):
    s["listeners"] = [{"local_address": "0.0.0.0", "port": 443, "pid": 2748, "process": "nginx"}]


def m_sni(s):
    s["http_sys"]["sni_bindings"] = [{"endpoint": "vpn.example.com:443", "cert_hash": _other_thumb(s),
                                      "app_id": IIS_APPID, "store": "MY", "ctl_store": None}]


def m_urlacl(s):
    s["http_sys"]["url_reservations"].append({"url": "https://+:443/", "sddl": "D:(A;;GX;;;WD)"})


def m_missing_v6(s):
    s["http_sys"]["ip_bindings"] = [b for b in s["http_sys"]["ip_bindings"] if b["endpoint"] != "[::]:443"]


def m_offload_nohash(s):
    s["sstp"]["use_https"] = False
    s["sstp"]["sha256_hash"] = None


def m_no_private_key(s):
    for c in s["certificates"]:
        if c["thumbprint"] == _sstp_thumb(s):
            c["has_private_key"] = False


def m_events(s):
    s["events"] = [{"provider": "Microsoft-Windows-RasSstp", "id": 18, "time": "2026-11-25T11:58:00Z",
                    "message": "SHA256CertificateHash is invalid"}]


def m_iis_foreign(s):
    s["iis"]["https_bindings"] = [{"site": "Default Web Site", "binding_information": "*:443:",
                                   "cert_hash": _other_thumb(s), "ssl_flags": 0}]
    for b in s["http_sys"]["ip_bindings"]:
        b["cert_hash"] = _other_thumb(s)
        b["app_id"] = IIS_APPID


def m_cert_not_found(s):
    s["certificates"] = [c for c in s["certificates"] if c["thumbprint"] != _sstp_thumb(s)]


MUTATIONS = [
    (m_not_elevated, "NOT_ELEVATED", "critical", False),
    (m_probe_errors, "PROBE_INCOMPLETE", "warning", None),
    (m_stopped, "REMOTEACCESS_STOPPED", "critical", True),
    (m_no_listener, "SSTP_NOT_LISTENING", "critical", True),
    (m_foreign_process, "PORT_OWNED_BY_OTHER_PROCESS", "critical", False),
    (m_sni, "HTTPSYS_SNI_BINDING", "warning", None),
    (m_urlacl, "URLACL_CONFLICT", "critical", True),
    (m_missing_v6, "HTTPSYS_BINDING_MISSING", "critical", True),
    (m_offload_nohash, "SSTP_OFFLOAD_HASH", "critical", None),
    (m_no_private_key, "SSTP_CERT_NO_PRIVATE_KEY", "critical", None),
    (m_events, "SSTP_ERROR_EVENTS", "warning", None),
    (m_iis_foreign, "SSTP_HASH_MISMATCH", "critical", True),
    (m_iis_foreign, "IIS_HTTPS_BINDING", "critical", True),
    (m_cert_not_found, "SSTP_CERT_NOT_FOUND", "critical", None),
]


@pytest.mark.parametrize("mutate,fid,severity,fixable", MUTATIONS,
                         ids=[f"{m.__name__}-{fid}" for m, fid, _s, _f in MUTATIONS])
def test_modified_snapshot(cli, tmp_path, mutate, fid, severity, fixable):
    snap = _base()
    mutate(snap)
    p = diag(cli, _write(tmp_path, snap), "--json")
    obj = parse_json(p)
    assert_check_shape(obj)
    found = {f["id"]: f for f in obj["findings"]}
    assert fid in found, sorted(found)
    assert found[fid]["severity"] == severity
    if fixable is not None:
        assert found[fid]["fixable"] is fixable
    assert obj["status"] == "unhealthy"
    assert p.returncode == 1
    if fixable is True:
        assert obj["plan"] is not None
    if fid == "NOT_ELEVATED":
        assert obj["plan"] is None
        assert obj["error"] is None


def test_not_elevated_classic_has_no_plan(cli, tmp_path):
    snap = json.loads((EXAMPLES / "iis-binding.json").read_text(encoding="utf-8"))
    snap["host"]["is_admin"] = False
    p = diag(cli, _write(tmp_path, snap), "--json")
    assert p.returncode == 1
    obj = parse_json(p)
    assert "NOT_ELEVATED" in ids(obj)
    assert "SSTP_HASH_MISMATCH" in ids(obj)
    assert obj["plan"] is None


def test_info_only_is_healthy(cli, tmp_path):
    snap = _base()
    snap["iis"]["https_bindings"] = [{"site": "Default Web Site", "binding_information": "*:443:",
                                      "cert_hash": _sstp_thumb(snap), "ssl_flags": 0}]
    p = diag(cli, _write(tmp_path, snap), "--json")
    obj = parse_json(p)
    assert_check_shape(obj)
    f = {f["id"]: f for f in obj["findings"]}
    assert f["IIS_HTTPS_BINDING"]["severity"] == "info"
    assert obj["status"] == "healthy"
    assert p.returncode == 0


def test_lowercase_hash_still_healthy(cli, tmp_path):
    snap = _base()
    snap["sstp"]["sha256_hash"] = snap["sstp"]["sha256_hash"].lower()
    p = diag(cli, _write(tmp_path, snap), "--json")
    assert p.returncode == 0, parse_json(p)["findings"]


def test_wildcard_appid_case_insensitive(cli, tmp_path):
    snap = _base()
    for b in snap["http_sys"]["ip_bindings"]:
        b["app_id"] = SSTP_APPID.upper()
    p = diag(cli, _write(tmp_path, snap), "--json")
    assert p.returncode == 0, parse_json(p)["findings"]


# --- bad files ----------------------------------------------------------------------------------

BAD = {
    "not-json": "garbage{",
    "empty-file": "",
    "json-list": "[]",
    "json-string": '"hello"',
    "empty-object": "{}",
}


@pytest.mark.parametrize("name", sorted(BAD))
def test_bad_files(cli, tmp_path, name):
    path = tmp_path / f"{name}.json"
    path.write_text(BAD[name], encoding="utf-8")
    p = diag(cli, path, "--json")
    assert p.returncode == 2, (p.returncode, p.stdout, p.stderr)
    assert "Traceback" not in p.stderr
    obj = parse_json(p)
    assert_check_shape(obj)
    assert obj["status"] == "error"
    assert obj["error"]["kind"] in {"bad_output", "config"}


def test_wrong_schema(cli, tmp_path):
    snap = _base()
    snap["schema"] = "sstp-bot/snapshot/v2"
    p = diag(cli, _write(tmp_path, snap), "--json")
    assert p.returncode == 2
    obj = parse_json(p)
    assert obj["status"] == "error"
    assert "schema" in obj["error"]["message"]


@pytest.mark.parametrize("section", ["host", "services", "sstp", "http_sys", "certificates", "probe_errors"])
def test_missing_section(cli, tmp_path, section):
    snap = _base()
    del snap[section]
    p = diag(cli, _write(tmp_path, snap), "--json")
    assert p.returncode == 2, p.stdout
    obj = parse_json(p)
    assert obj["status"] == "error"
    assert "Traceback" not in p.stderr


def test_wrong_types(cli, tmp_path):
    snap = _base()
    snap["certificates"] = "not a list"
    p = diag(cli, _write(tmp_path, snap), "--json")
    assert p.returncode == 2
    assert "Traceback" not in p.stderr
    assert parse_json(p)["status"] == "error"


def test_missing_file(cli, tmp_path):
    p = diag(cli, tmp_path / "nope.json", "--json")
    assert p.returncode == 2
    assert "Traceback" not in p.stderr
    assert parse_json(p)["status"] == "error"


def test_missing_file_text(cli, tmp_path):
    p = diag(cli, tmp_path / "nope.json")
    assert p.returncode == 2
    assert "nope.json" in p.stdout + p.stderr


def test_directory_as_snapshot(cli, tmp_path):
    p = diag(cli, tmp_path, "--json")
    assert p.returncode == 2
    assert "Traceback" not in p.stderr


@pytest.mark.parametrize("argv", [("diagnose",), ("diagnose", "--snapshot"), ("diagnose", "--json")])
def test_diagnose_usage(cli, argv):
    p = cli.run(*argv, config=None)
    assert p.returncode == 3


@pytest.mark.parametrize("encoding", ["utf-16", "utf-8-sig"])
def test_windows_encodings(cli, tmp_path, encoding):
    """PowerShell 5.1 `Out-File` writes UTF-16 (and `-Encoding UTF8` a BOM): a saved probe must still load."""
    path = tmp_path / f"snap-{encoding}.json"
    path.write_bytes((EXAMPLES / "iis-binding.json").read_text(encoding="utf-8").encode(encoding))
    p = diag(cli, path, "--json")
    assert p.returncode == 1, p.stdout + p.stderr
    assert "SSTP_HASH_MISMATCH" in ids(parse_json(p))


@pytest.mark.parametrize(("collected_at", "expected"), [
    ("2035-12-15T00:00:00Z", {"SSTP_CERT_EXPIRING"}),  # 17 days before the certificate's end
    ("2036-02-01T00:00:00Z", {"SSTP_CERT_EXPIRED"}),
    ("2025-12-15T00:00:00Z", {"SSTP_CERT_EXPIRED"}),  # not yet valid then
    ("2030-06-01T00:00:00Z", set()),
])
def test_a_replay_judges_certificates_when_the_snapshot_was_taken(cli, tmp_path, collected_at, expected):
    """DESIGN 3/7: `diagnose --snapshot` replays the check, reported at the snapshot's `collected_at`;
    certificate dates are judged at that moment too, whatever day the file is read."""
    snapshot = json.loads((EXAMPLES / "healthy.json").read_text())
    snapshot["collected_at"] = collected_at
    path = tmp_path / "replay.json"
    path.write_text(json.dumps(snapshot))
    obj = parse_json(diag(cli, path, "--json"))
    assert obj["checked_at"] == collected_at
    assert {i for i in ids(obj) if i.startswith("SSTP_CERT_")} == expected


@pytest.mark.parametrize("name", ["vpn.example.com.", "*.example.com", "vpn example.com"])
def test_a_public_name_option_that_is_not_a_host_name_is_refused(cli, name):
    p = diag(cli, EXAMPLES / "healthy.json", "--public-name", name, "--json")
    assert p.returncode == 2
    obj = parse_json(p)
    assert obj["error"]["kind"] == "config" and "--public-name" in obj["error"]["message"]
