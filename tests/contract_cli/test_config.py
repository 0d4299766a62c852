"""Configuration path resolution, validation and secrets (DESIGN 7)."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from .conftest import PW_VAR, assert_check_shape, parse_json


def _one(obj):
    if isinstance(obj, list):
        assert len(obj) == 1
        return obj[0]
    return obj


def test_config_flag(cli):
    p = cli.run("check", "ok1", "--json")
    assert p.returncode == 0
    assert parse_json(p)["status"] == "healthy"


def test_env_variable_when_no_flag(cli, tmp_path):
    env = cli.env(SSTP_BOT_CONFIG=str(cli.config))
    p = cli.run("check", "ok1", "--json", config=None, env=env, cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert parse_json(p)["server"] == "ok1"


def test_cwd_file_when_no_flag_and_no_env(cli, tmp_path):
    shutil.copy(cli.config, tmp_path / "sstp-bot.toml")
    p = cli.run("check", "ok1", "--json", config=None, env=cli.env(SSTP_BOT_CONFIG=None), cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert parse_json(p)["status"] == "healthy"


def test_flag_beats_env(cli, tmp_path):
    bogus = tmp_path / "other.toml"
    bogus.write_text('[servers.elsewhere]\nhost = "127.0.0.1"\n', encoding="utf-8")
    env = cli.env(SSTP_BOT_CONFIG=str(bogus))
    p = cli.run("check", "ok1", "--json", config=cli.config, env=env)
    assert p.returncode == 0, p.stdout + p.stderr


def test_env_beats_cwd_file(cli, tmp_path):
    shutil.copy(cli.config, tmp_path / "sstp-bot.toml")
    env = cli.env(SSTP_BOT_CONFIG=str(tmp_path / "missing.toml"))
    p = cli.run("check", "ok1", "--json", config=None, env=env, cwd=tmp_path)
    assert p.returncode == 2
    obj = _one(parse_json(p))
    assert obj["error"]["kind"] == "config"


def test_no_config_anywhere(cli, tmp_path):
    p = cli.run("check", "ok1", "--json", config=None, env=cli.env(SSTP_BOT_CONFIG=None), cwd=tmp_path)
    assert p.returncode == 2
    obj = _one(parse_json(p))
    assert_check_shape(obj)
    assert obj["error"]["kind"] == "config"


def test_flag_to_missing_file(cli, tmp_path):
    p = cli.run("check", "ok1", "--json", config=tmp_path / "nope.toml")
    assert p.returncode == 2
    obj = _one(parse_json(p))
    assert obj["error"]["kind"] == "config"


def _variant(cli, tmp_path, old: str, new: str, name: str = "variant.toml"):
    text = cli.config.read_text(encoding="utf-8")
    assert old in text
    path = tmp_path / name
    path.write_text(text.replace(old, new, 1), encoding="utf-8")
    return path


@pytest.mark.parametrize("old,new,key", [
    ('group = "emea"', 'group = "emea"\nbogus_key = 1', "bogus_key"),
    ("[defaults]", "[defaults]\nfrobnicate = true", "frobnicate"),
    ("[slack]", "[slack]\nwhatever = 1", "whatever"),
    ("[database]", "[database]\nsize = 3", "size"),
    ("[slack]", "[surprise]\nx = 1\n\n[slack]", "surprise"),
])
def test_unknown_keys_refused(cli, tmp_path, old, new, key):
    cfg = _variant(cli, tmp_path, old, new)
    before = cli.requests_total()
    p = cli.run("check", "ok1", "--json", config=cfg)
    assert p.returncode == 2, p.stdout
    obj = _one(parse_json(p))
    assert_check_shape(obj)
    assert obj["error"]["kind"] == "config"
    assert key in obj["error"]["message"]
    assert cli.requests_total() == before


@pytest.mark.parametrize("old,new,key", [
    ('auth = "ntlm"', 'auth = "digest"', "auth"),
    ('transport = "http"', 'transport = "ftp"', "transport"),
    ("connect_timeout = 5", 'connect_timeout = "five"', "connect_timeout"),
    ('mode = "socket"', 'mode = "carrier-pigeon"', "mode"),
    ("verify_tls = true", 'verify_tls = "yes please"', "verify_tls"),
])
def test_bad_values_refused(cli, tmp_path, old, new, key):
    cfg = _variant(cli, tmp_path, old, new)
    p = cli.run("check", "ok1", "--json", config=cfg)
    assert p.returncode == 2, p.stdout
    obj = _one(parse_json(p))
    assert obj["error"]["kind"] == "config"
    assert key in obj["error"]["message"]


def test_invalid_toml(cli, tmp_path):
    cfg = tmp_path / "broken.toml"
    cfg.write_text("this is = = not toml\n", encoding="utf-8")
    p = cli.run("check", "ok1", "--json", config=cfg)
    assert p.returncode == 2
    assert _one(parse_json(p))["error"]["kind"] == "config"


def test_bad_config_in_text_mode_is_clear(cli, tmp_path):
    cfg = _variant(cli, tmp_path, "[defaults]", "[defaults]\nfrobnicate = true")
    p = cli.run("check", "ok1", config=cfg)
    assert p.returncode == 2
    assert "frobnicate" in p.stdout + p.stderr
    assert "Traceback" not in p.stderr


@pytest.mark.parametrize("old,new", [
    (f'password_env = "{PW_VAR}"', f'password_env = "{PW_VAR}"\npassword = "Lab-Passw0rd!"'),
    ("[slack]", '[slack]\nbot_token = "xoxb-123"'),
    ("[slack]", '[slack]\nsigning_secret = "abc"'),
])
def test_secrets_in_file_refused(cli, tmp_path, old, new):
    cfg = _variant(cli, tmp_path, old, new)
    p = cli.run("check", "ok1", "--json", config=cfg)
    assert p.returncode == 2
    obj = _one(parse_json(p))
    assert obj["error"]["kind"] == "config"
    assert "Lab-Passw0rd!" not in p.stdout + p.stderr


def test_password_from_named_env_variable(cli):
    p = cli.run("check", "ok1", "--json", env=cli.env(**{PW_VAR: cli.password}))
    assert p.returncode == 0


def test_missing_password_variable(cli):
    before = cli.requests_total()
    p = cli.run("check", "ok1", "--json", env=cli.env(**{PW_VAR: None}))
    assert p.returncode == 2, p.stdout
    obj = _one(parse_json(p))
    assert_check_shape(obj)
    assert obj["error"]["kind"] == "config"
    assert PW_VAR in obj["error"]["message"]
    assert cli.requests_total() == before


def test_wrong_password_is_auth(cli):
    p = cli.run("check", "ok1", "--json", env=cli.env(**{PW_VAR: "wrong-wrong"}))
    assert p.returncode == 2
    obj = _one(parse_json(p))
    assert obj["error"]["kind"] == "auth"
    assert "wrong-wrong" not in p.stdout + p.stderr


def test_servers_lists_inventory(cli):
    p = cli.run("servers")
    assert p.returncode == 0, p.stderr
    for name in ("ok1", "iis", "closed", "f-auth"):
        assert name in p.stdout
    assert cli.password not in p.stdout


def test_servers_needs_no_password(cli):
    p = cli.run("servers", env=cli.env(**{PW_VAR: None}))
    assert p.returncode == 0


def test_servers_bad_config(cli, tmp_path):
    cfg = _variant(cli, tmp_path, "[defaults]", "[defaults]\nfrobnicate = true")
    p = cli.run("servers", config=cfg)
    assert p.returncode == 2
    assert "frobnicate" in p.stdout + p.stderr


# --- edge cases -----------------------------------------------------------------------------------

def _tls_config(cli, tmp_path, name: str, extra: str) -> Path:
    """An inventory with one server, t1: the lab's server whose certificate no default store trusts."""
    srv = cli.lab.servers["f-tls"]
    cfg = tmp_path / name
    cfg.write_text(
        "[database]\n"
        f'url = "sqlite:///{tmp_path / "tls.db"}"\n'
        "[defaults]\n"
        'username = "LAB\\\\sstp-bot"\n'
        f'password_env = "{PW_VAR}"\n'
        'auth = "ntlm"\n'
        "[servers.t1]\n"
        f'host = "{srv.host}"\n'
        f"port = {srv.port}\n"
        'transport = "https"\n'
        f'client_endpoint = "{srv.client_endpoint}"\n'  # DESIGN 11 [2]: the lab's SSTP port
        f"{extra}\n",
        encoding="utf-8")
    return cfg


def test_missing_ca_bundle_file_is_config_error(cli, tmp_path):
    cfg = _tls_config(cli, tmp_path, "tls.toml", f'ca_bundle = "{tmp_path / "no-such-ca.pem"}"')
    p = cli.run("check", "t1", "--json", config=cfg)
    assert p.returncode == 2
    error = _one(parse_json(p))["error"]
    assert error["kind"] == "config" and "ca_bundle" in error["message"]


def test_untrusted_tls_with_verify_off(cli, tmp_path):
    cfg = _tls_config(cli, tmp_path, "tls-off.toml", "verify_tls = false")
    p = cli.run("check", "t1", "--json", config=cfg)
    assert p.returncode == 0, p.stdout
    assert _one(parse_json(p))["status"] == "healthy"


def test_bad_database_url_check_json(cli, tmp_path):
    text = cli.config.read_text(encoding="utf-8")
    start = text.index('url = "') + len('url = "')
    end = text.index('"', start)
    cfg = tmp_path / "baddb.toml"
    cfg.write_text(text[:start] + "notaurl" + text[end:], encoding="utf-8")
    p = cli.run("check", "ok1", "--json", config=cfg)
    assert p.returncode == 2
    obj = _one(parse_json(p))
    assert obj["error"]["kind"] == "config"
    assert "url" in obj["error"]["message"]


def test_bad_database_url_text(cli, tmp_path):
    text = cli.config.read_text(encoding="utf-8")
    start = text.index('url = "') + len('url = "')
    end = text.index('"', start)
    cfg = tmp_path / "baddb.toml"
    cfg.write_text(text[:start] + "notaurl" + text[end:], encoding="utf-8")
    p = cli.run("check", "ok1", config=cfg)
    assert p.returncode == 2
    assert "notaurl" in p.stdout + p.stderr
    assert "Traceback" not in p.stderr


def test_fix_json_bad_config(cli, tmp_path):
    cfg = _variant(cli, tmp_path, "[defaults]", "[defaults]\nfrobnicate = true")
    p = cli.run("fix", "ok1", "--yes", "--json", config=cfg)
    assert p.returncode == 2
    obj = parse_json(p)
    assert set(obj) == {"server", "plan_id", "state", "steps", "before", "after"}
    assert obj["before"]["error"]["kind"] == "config"


def test_fix_json_missing_password(cli):
    p = cli.run("fix", "ok1", "--yes", "--json", env=cli.env(**{PW_VAR: None}))
    assert p.returncode == 2
    obj = parse_json(p)
    assert obj["before"]["error"]["kind"] == "config"
    assert obj["after"] is None


def test_empty_username(cli, tmp_path):
    cfg = _variant(cli, tmp_path, 'username = "LAB\\\\sstp-bot"', 'username = ""')
    p = cli.run("check", "ok1", "--json", config=cfg)
    assert p.returncode == 2
    assert _one(parse_json(p))["error"]["kind"] in {"config", "auth"}


def test_basic_over_http_refused(cli, tmp_path):
    cfg = _variant(cli, tmp_path, 'auth = "ntlm"', 'auth = "basic"')
    before = cli.requests_total()
    p = cli.run("check", "ok1", "--json", config=cfg)
    assert p.returncode == 2
    assert _one(parse_json(p))["error"]["kind"] == "config"
    assert cli.requests_total() == before


@pytest.mark.parametrize("old,new", [
    ("connect_timeout = 5", "connect_timeout = -1"),
    ("operation_timeout = 30", "operation_timeout = 0"),
    ("[slack]", "[slack]\nplan_ttl_minutes = 0"),
    ('group = "emea"', "group = 5"),
    ('transport = "http"', "port = 70000\ntransport = \"http\""),
])
def test_more_bad_values(cli, tmp_path, old, new):
    cfg = _variant(cli, tmp_path, old, new)
    p = cli.run("check", "ok1", "--json", config=cfg)
    assert p.returncode == 2
    assert _one(parse_json(p))["error"]["kind"] == "config"


def test_cert_expiry_warning_days_honoured(cli, tmp_path):
    cfg = _variant(cli, tmp_path, "operation_timeout = 30", "operation_timeout = 30\ncert_expiry_warning_days = 3000")
    p = cli.run("check", "ok1", "--json", config=cfg)
    assert p.returncode == 1
    obj = _one(parse_json(p))
    f = {f["id"]: f for f in obj["findings"]}
    assert f["SSTP_CERT_EXPIRING"]["severity"] == "warning"


def test_public_name_from_inventory(cli, tmp_path):
    text = cli.config.read_text(encoding="utf-8")
    marker = "[servers.ok1]"
    i = text.index(marker)
    j = text.index('public_name = "vpn.example.com"', i)
    cfg = tmp_path / "pn.toml"
    cfg.write_text(text[:j] + 'public_name = "other.example.net"' + text[j + len('public_name = "vpn.example.com"'):],
                   encoding="utf-8")
    p = cli.run("check", "ok1", "--json", config=cfg)
    assert p.returncode == 1
    assert "SSTP_CERT_NAME_MISMATCH" in {f["id"] for f in _one(parse_json(p))["findings"]}


def test_utf16_config_with_bom_is_read_and_other_bytes_are_a_config_error(cli, tmp_path):
    """Notepad's "Unicode" (UTF-16 with a BOM) is read as what it is; bytes that are not text are a
    config error with a clear message, never a traceback."""
    cfg = tmp_path / "utf16.toml"
    cfg.write_bytes(cli.config.read_text(encoding="utf-8").encode("utf-16"))
    p = cli.run("check", "ok1", "--json", config=cfg)
    assert p.returncode == 0, p.stderr
    assert _one(parse_json(p))["status"] == "healthy"
    cfg.write_bytes(b"[defaults]\nusername = \"\xff\xfeCORP\"\n")
    p = cli.run("check", "ok1", "--json", config=cfg)
    assert p.returncode == 2
    obj = _one(parse_json(p))
    assert obj["error"]["kind"] == "config" and "UTF-8" in obj["error"]["message"]
