"""`check SERVER... | --all | --group G [--json]` (DESIGN 7), against the lab."""
from __future__ import annotations

import pytest

from .conftest import LAB_SERVERS, assert_check_shape, ids, parse_json


@pytest.mark.slow
def test_healthy_server_json_shape_and_exit_0(cli):
    p = cli.run("check", "ok1", "--json")
    assert p.returncode == 0, p.stderr
    obj = parse_json(p)
    assert_check_shape(obj)
    assert obj["server"] == "ok1"
    assert obj["status"] == "healthy"
    assert obj["error"] is None
    assert obj["plan"] is None
    assert [f for f in obj["findings"] if f["severity"] != "info"] == []


@pytest.mark.slow
def test_healthy_server_text_exit_0(cli):
    p = cli.run("check", "ok1")
    assert p.returncode == 0, p.stderr
    assert "ok1" in p.stdout


def test_classic_iis_binding_findings_plan_exit_1(cli):
    p = cli.run("check", "iis", "--json")
    assert p.returncode == 1, p.stderr
    obj = parse_json(p)
    assert_check_shape(obj)
    assert obj["status"] == "unhealthy"
    assert {"SSTP_HASH_MISMATCH", "IIS_HTTPS_BINDING"} <= ids(obj)
    sev = {f["id"]: f["severity"] for f in obj["findings"]}
    assert sev["SSTP_HASH_MISMATCH"] == "critical"
    assert sev["IIS_HTTPS_BINDING"] == "critical"
    assert obj["plan"] is not None
    actions = [s["action"] for s in obj["plan"]["steps"]]
    # DESIGN 5: remove IIS binding, restart IIS, delete wildcard bindings, bind.
    assert actions[0] == "remove_iis_binding"
    assert actions.index("restart_iis") < actions.index("delete_httpsys_binding") < actions.index("bind_sstp_certificate")
    assert actions[-1] == "bind_sstp_certificate"
    bind = obj["plan"]["steps"][-1]
    assert bind["disruptive"] is True
    thumb = bind["params"].get("Thumbprint")
    assert thumb and len(thumb) == 40 and thumb == thumb.upper()
    remove = obj["plan"]["steps"][0]
    assert remove["params"] == {"Site": "Default Web Site", "BindingInformation": "*:443:"}
    eps = {s["params"].get("Endpoint") for s in obj["plan"]["steps"] if s["action"] == "delete_httpsys_binding"}
    assert eps == {"0.0.0.0:443", "[::]:443"}
    for s in obj["plan"]["steps"]:
        if s["action"] in {"remove_iis_binding", "restart_iis", "delete_httpsys_binding"}:
            assert s["disruptive"] is False, s


def test_remoteaccess_stopped(cli):
    p = cli.run("check", "stopped", "--json")
    assert p.returncode == 1
    obj = parse_json(p)
    assert_check_shape(obj)
    assert "REMOTEACCESS_STOPPED" in ids(obj)
    assert [s["action"] for s in obj["plan"]["steps"]] == ["restart_remoteaccess"]


def test_foreign_process_guidance_no_plan(cli):
    p = cli.run("check", "foreign", "--json")
    assert p.returncode == 1
    obj = parse_json(p)
    assert_check_shape(obj)
    assert "PORT_OWNED_BY_OTHER_PROCESS" in ids(obj)
    assert obj["plan"] is None


def test_not_elevated_is_a_finding_not_an_error(cli):
    p = cli.run("check", "noadmin", "--json")
    assert p.returncode == 1, p.stdout + p.stderr
    obj = parse_json(p)
    assert_check_shape(obj)
    assert obj["error"] is None
    assert obj["status"] == "unhealthy"
    f = {f["id"]: f for f in obj["findings"]}
    assert f["NOT_ELEVATED"]["severity"] == "critical"
    assert obj["plan"] is None  # DESIGN 5: not elevated -> guidance, not a plan


def test_several_servers_print_a_list(cli):
    p = cli.run("check", "ok1", "ok2", "--json")
    assert p.returncode == 0
    out = parse_json(p)
    assert isinstance(out, list) and len(out) == 2
    for o in out:
        assert_check_shape(o)
    assert sorted(o["server"] for o in out) == ["ok1", "ok2"]


def test_several_servers_with_findings_exit_1(cli):
    p = cli.run("check", "ok1", "iis", "--json")
    assert p.returncode == 1
    out = parse_json(p)
    assert {o["server"]: o["status"] for o in out} == {"ok1": "healthy", "iis": "unhealthy"}


def test_several_servers_one_unreachable_exit_2(cli):
    p = cli.run("check", "ok1", "iis", "closed", "--json")
    assert p.returncode == 2
    out = parse_json(p)
    by = {o["server"]: o for o in out}
    assert by["ok1"]["status"] == "healthy"
    assert by["iis"]["status"] == "unhealthy"
    assert by["closed"]["error"]["kind"] == "unreachable"


def test_group(cli):
    p = cli.run("check", "--group", "emea", "--json")
    assert p.returncode == 0, p.stdout
    out = parse_json(p)
    assert isinstance(out, list)
    for o in out:
        assert_check_shape(o)
    assert sorted(o["server"] for o in out) == ["ok1", "ok2"]


def test_group_with_findings(cli):
    p = cli.run("check", "--group", "apac", "--json")
    assert p.returncode == 1
    out = parse_json(p)
    assert sorted(o["server"] for o in out) == ["foreign", "iis", "stopped"]
    assert all(o["status"] == "unhealthy" for o in out)


@pytest.mark.slow
def test_all_lists_every_server(cli):
    p = cli.run("check", "--all", "--json", timeout=120)
    assert p.returncode == 2  # fault servers could not be checked
    out = parse_json(p)
    assert isinstance(out, list)
    for o in out:
        assert_check_shape(o)
    assert sorted(o["server"] for o in out) == sorted([*list(LAB_SERVERS), "closed"])


def test_unknown_server_is_config_error_and_never_connects(cli):
    before = cli.requests_total()
    p = cli.run("check", "nosuch", "--json")
    assert p.returncode == 2
    obj = parse_json(p)
    if isinstance(obj, list):
        assert len(obj) == 1
        obj = obj[0]
    assert_check_shape(obj)
    assert obj["server"] == "nosuch"
    assert obj["status"] == "error"
    assert obj["error"]["kind"] == "config"
    assert obj["findings"] == [] and obj["plan"] is None
    assert cli.requests_total() == before


@pytest.mark.slow
def test_unknown_server_text_mode_exit_2(cli):
    p = cli.run("check", "nosuch")
    assert p.returncode == 2
    assert "nosuch" in (p.stdout + p.stderr)


@pytest.mark.slow
def test_unknown_server_among_known_ones(cli):
    p = cli.run("check", "ok1", "nosuch", "--json")
    assert p.returncode == 2
    out = parse_json(p)
    assert isinstance(out, list)
    by = {o["server"]: o for o in out}
    assert by["nosuch"]["error"]["kind"] == "config"
    for o in out:
        assert_check_shape(o)


def test_unknown_group(cli):
    p = cli.run("check", "--group", "nogroup", "--json")
    assert p.returncode == 2
    [obj] = parse_json(p)
    assert obj["error"]["kind"] == "config"
    assert "nogroup" in (p.stdout + p.stderr)


def test_unreachable_closed_port(cli):
    p = cli.run("check", "closed", "--json")
    assert p.returncode == 2
    obj = parse_json(p)
    assert_check_shape(obj)
    assert obj["status"] == "error"
    assert obj["error"]["kind"] == "unreachable"
    assert obj["findings"] == [] and obj["plan"] is None


@pytest.mark.parametrize("server,kind", [
    ("f-refused", "unreachable"),
    ("f-auth", "auth"),
    ("f-tls", "tls"),
    ("f-slow", "timeout"),
    ("f-500", "bad_output"),
    ("f-wsman", "bad_output"),
    ("f-script", "script_failed"),
    ("f-badjson", "bad_output"),
    ("f-errstream", "script_failed"),
    ("f-hang", "timeout"),
])
def test_error_kinds(cli, server, kind):
    p = cli.run("check", server, "--json")
    assert p.returncode == 2, p.stdout + p.stderr
    obj = parse_json(p)
    assert_check_shape(obj)
    assert obj["server"] == server
    assert obj["status"] == "error"
    assert obj["error"]["kind"] == kind, obj["error"]
    assert obj["plan"] is None


@pytest.mark.slow
def test_auth_message_does_not_leak_password(cli):
    p = cli.run("check", "f-auth", "--json")
    assert "definitely-not-it" not in p.stdout + p.stderr
    p = cli.run("check", "ok1", "--json")
    assert cli.password not in p.stdout + p.stderr


def test_error_text_mode_exit_2(cli):
    p = cli.run("check", "closed")
    assert p.returncode == 2


@pytest.mark.parametrize("argv", [
    ("check",),
    ("check", "--json"),
    ("check", "--all", "ok1"),
    ("check", "--all", "--group", "emea"),
    ("check", "--group"),
    ("check", "ok1", "--no-such-flag"),
])
def test_usage_errors_exit_3(cli, argv):
    before = cli.requests_total()
    p = cli.run(*argv)
    assert p.returncode == 3, (p.returncode, p.stdout, p.stderr)
    assert cli.requests_total() == before


def _with_server_lines(cli, tmp_path, server, extra_lines):
    text = cli.config.read_text(encoding="utf-8")
    marker = f"[servers.{server}]\n"
    assert marker in text
    cfg = tmp_path / "offload.toml"
    cfg.write_text(text.replace(marker, marker + extra_lines + "\n", 1), encoding="utf-8")
    return cfg


@pytest.mark.slow
def test_offload_hash(cli, tmp_path):
    """SSTP_OFFLOAD_HASH: use_https false and sha256_hash missing or != the server's offload_sha256."""
    twin = cli.lab.servers["offload"].twin
    twin.state.use_https = False
    good = twin.state.sha256_hash
    assert good and len(good) == 64
    cfg = _with_server_lines(cli, tmp_path, "offload", f'offload_sha256 = "{good}"')
    p = cli.run("check", "offload", "--json", config=cfg)
    obj = parse_json(p)
    assert_check_shape(obj)
    assert "SSTP_OFFLOAD_HASH" not in ids(obj), obj["findings"]
    assert p.returncode == 0, obj["findings"]

    cfg = _with_server_lines(cli, tmp_path, "offload", f'offload_sha256 = "{"AB" * 32}"')
    p = cli.run("check", "offload", "--json", config=cfg)
    obj = parse_json(p)
    f = {f["id"]: f for f in obj["findings"]}
    assert f["SSTP_OFFLOAD_HASH"]["severity"] == "critical"
    assert p.returncode == 1

    cfg = _with_server_lines(cli, tmp_path, "offload", f'offload_sha256 = "{good.lower()}"')
    p = cli.run("check", "offload", "--json", config=cfg)
    assert "SSTP_OFFLOAD_HASH" not in ids(parse_json(p))
