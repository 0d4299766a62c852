from __future__ import annotations

from pathlib import Path

import pytest

from bot.config import load_config, parse_config
from commands.errors import ConfigError, UnknownServer

EXAMPLE = """
[slack]
approvers = ["U0123ABCD"]

[defaults]
username = "CORP\\\\svc-sstpbot"
password_env = "SSTP_BOT_WINRM_PASSWORD"

[servers.vpn01]
host = "vpn01.corp.example.com"
public_name = "vpn.example.com"
group = "emea"

[servers.vpn02]
host = "vpn02.corp.example.com"
port = 5985
transport = "http"
group = "emea"
"""


def test_servers_inherit_defaults(tmp_path: Path) -> None:
    path = tmp_path / "sstp-bot.toml"
    path.write_text(EXAMPLE)
    config = load_config(path, environ={})
    vpn01 = config.server("VPN01")
    assert vpn01.host == "vpn01.corp.example.com"
    assert vpn01.username == "CORP\\svc-sstpbot"
    assert vpn01.transport == "https" and vpn01.port == 5986 and vpn01.verify_tls
    assert config.server("vpn02").transport == "http"
    assert [s.name for s in config.group("emea")] == ["vpn01", "vpn02"]
    assert config.slack.approvers == ("U0123ABCD",)


def test_unknown_server_is_refused_with_the_known_names(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text(EXAMPLE)
    with pytest.raises(UnknownServer, match="vpn01, vpn02"):
        load_config(path, environ={}).server("vpn99")


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ("[slack]\nmode = 'carrier-pigeon'\n", "slack.mode"),
        ("[slak]\n", "unknown configuration key 'slak'"),
        ("[servers.vpn01]\nhost='a'\nprot=5986\n", "servers.vpn01.prot"),
        ("[servers.vpn01]\nhost='a'\nport='5986'\n", "expected int"),
        ("[servers.vpn01]\nhost='a'\nverify_tls=1\n", "expected bool"),
        ("[servers.'vpn 01']\nhost='a'\n", "letters, digits"),
        ("[servers.vpn01]\n", "host is required"),
        ("[servers.vpn01]\nhost='a'\nauth='basic'\ntransport='http'\n", "only allowed over https"),
        ("[servers.vpn01]\nhost='a'\noffload_sha256='12'\n", "64 hex"),
        ("[slack]\napprovers=['bob']\n", "not a Slack ID"),
        ("[defaults]\nhost='a'\n", "unknown configuration key 'defaults.host'"),
    ],
)
def test_bad_config_names_the_key(toml: str, message: str) -> None:
    import tomllib

    with pytest.raises(ConfigError, match=message):
        parse_config(tomllib.loads(toml))


def test_missing_file_and_bad_toml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.toml", environ={})
    bad = tmp_path / "bad.toml"
    bad.write_text("[slack\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(bad, environ={})


def test_config_path_from_environment(tmp_path: Path) -> None:
    path = tmp_path / "from-env.toml"
    path.write_text(EXAMPLE)
    assert load_config(None, environ={"SSTP_BOT_CONFIG": str(path)}).path == path


def test_password_comes_from_the_environment_and_is_never_in_the_error(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text(EXAMPLE)
    server = load_config(path, environ={}).server("vpn01")
    assert server.password({"SSTP_BOT_WINRM_PASSWORD": "s3cret!"}) == "s3cret!"
    with pytest.raises(ConfigError, match="SSTP_BOT_WINRM_PASSWORD") as info:
        server.password({})
    assert "s3cret" not in str(info.value)


def test_password_file(tmp_path: Path) -> None:
    secret = tmp_path / "pw"
    secret.write_text("file-secret\n")
    path = tmp_path / "c.toml"
    path.write_text(f"[servers.lab1]\nhost='127.0.0.1'\nusername='lab'\npassword_env=''\npassword_file='{secret}'\n")
    assert load_config(path, environ={}).server("lab1").password({}) == "file-secret"


def test_a_server_password_source_overrides_the_inherited_one(tmp_path: Path) -> None:
    secret = tmp_path / "pw"
    secret.write_text("from-file\n")
    path = tmp_path / "c.toml"
    path.write_text(
        "[defaults]\nusername='lab'\npassword_env='SSTP_BOT_WINRM_PASSWORD'\n"
        f"[servers.a]\nhost='127.0.0.1'\npassword_file='{secret}'\n"
        "[servers.b]\nhost='127.0.0.1'\n"
    )
    config = load_config(path, environ={})
    environ = {"SSTP_BOT_WINRM_PASSWORD": "from-env"}
    assert config.server("a").password(environ) == "from-file"
    assert config.server("b").password(environ) == "from-env"


def test_the_default_port_follows_the_transport(tmp_path: Path) -> None:
    import tomllib

    config = parse_config(tomllib.loads(
        "[defaults]\ntransport='http'\n[servers.a]\nhost='a'\n[servers.b]\nhost='b'\ntransport='https'\n"
        "[servers.c]\nhost='c'\nport=15985\n"
    ))
    assert (config.server("a").port, config.server("b").port, config.server("c").port) == (5985, 5986, 15985)
