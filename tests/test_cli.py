"""The CLI edge: parser, exit codes, and `servers`."""

from __future__ import annotations

import io
from pathlib import Path

from bot.cli import Environment, ExitStatus, main


def run(argv: list[str], environ: dict[str, str] | None = None) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(argv, env=Environment(stdout=out, stderr=err, stdin=io.StringIO(), environ=environ or {}))
    return code, out.getvalue(), err.getvalue()


def test_no_command_prints_help_and_is_a_usage_error() -> None:
    code, out, _ = run([])
    assert code == ExitStatus.USAGE and "check" in out and "diagnose" in out


def test_unknown_command_and_bad_flag_are_usage_errors() -> None:
    assert run(["frobnicate"])[0] == ExitStatus.USAGE
    code, _, err = run(["history", "--limit", "many"])
    assert code == ExitStatus.USAGE and "invalid int value" in err


def test_missing_config_is_a_clear_error(tmp_path: Path) -> None:
    code, _, err = run(["--config", str(tmp_path / "none.toml"), "servers"])
    assert code == ExitStatus.ERROR and "not found" in err


def test_servers_lists_the_inventory_without_secrets(tmp_path: Path) -> None:
    config = tmp_path / "sstp-bot.toml"
    config.write_text(
        "[defaults]\nusername='CORP\\\\svc'\npassword_env='PW'\n"
        "[servers.vpn01]\nhost='vpn01.corp.example.com'\ngroup='emea'\npublic_name='vpn.example.com'\n"
        "[servers.vpn02]\nhost='vpn02.corp.example.com'\ntransport='http'\nport=5985\n"
    )
    code, out, _ = run(["--config", str(config), "servers"], environ={"PW": "hunter2-secret"})
    assert code == ExitStatus.OK
    assert "vpn01.corp.example.com:5986" in out and "vpn02.corp.example.com:5985" in out
    assert "emea" in out and "vpn.example.com" in out
    assert "hunter2" not in out


def test_config_from_environment_variable(tmp_path: Path) -> None:
    config = tmp_path / "elsewhere.toml"
    config.write_text("[servers.vpn09]\nhost='vpn09.corp.example.com'\n")
    code, out, _ = run(["servers"], environ={"SSTP_BOT_CONFIG": str(config)})
    assert code == ExitStatus.OK and "vpn09" in out


def test_check_json_reports_a_configuration_error_in_the_contract_shape(tmp_path: Path) -> None:
    import json

    code, out, err = run(["--config", str(tmp_path / "missing.toml"), "check", "vpn01", "--json"])
    assert code == ExitStatus.ERROR and "not found" in err
    doc = json.loads(out)
    assert set(doc) == {"server", "status", "checked_at", "findings", "plan", "error"}
    assert doc["server"] == "vpn01" and doc["status"] == "error" and doc["error"]["kind"] == "config"
    code, out, _ = run(["--config", str(tmp_path / "missing.toml"), "check", "vpn01", "vpn02", "--json"])
    assert [d["server"] for d in json.loads(out)] == ["vpn01", "vpn02"]


def test_config_may_follow_the_subcommand(tmp_path: Path) -> None:
    config = tmp_path / "after.toml"
    config.write_text("[servers.vpn07]\nhost='vpn07.corp.example.com'\n")
    code, out, _ = run(["servers", "--config", str(config)])
    assert code == ExitStatus.OK and "vpn07" in out
    code, out, _ = run(["--config", str(config), "db", "upgrade", "--config", str(tmp_path / "missing.toml")])
    assert code == ExitStatus.ERROR


def test_an_error_about_an_inherited_key_names_defaults(tmp_path: Path) -> None:
    config = tmp_path / "sstp-bot.toml"
    config.write_text("[defaults]\nport = 99999\n[servers.vpn01]\nhost = 'vpn01.corp.example.com'\n")
    code, _, err = run(["--config", str(config), "servers"])
    assert code == ExitStatus.ERROR and "[defaults] port" in err and "servers.vpn01" in err
    # set on the server itself, the message names the server's table
    config.write_text("[servers.vpn01]\nhost = 'vpn01.corp.example.com'\nport = 99999\n")
    code, _, err = run(["--config", str(config), "servers"])
    assert code == ExitStatus.ERROR and "servers.vpn01.port" in err and "[defaults]" not in err


class _LeavingReader(io.StringIO):
    """stdout whose reader leaves after the first line (`sstp-bot lab --list | head -1`)."""

    def write(self, text: str) -> int:
        if self.getvalue().count("\n") >= 1:
            raise BrokenPipeError(32, "Broken pipe")
        return super().write(text)


def test_a_reader_that_leaves_ends_the_command_with_141_not_1() -> None:
    out = _LeavingReader()
    code = main(["lab", "--list"], env=Environment(stdout=out, stderr=io.StringIO(), stdin=io.StringIO(), environ={}))
    assert code == ExitStatus.BROKEN_PIPE == 141
    assert out.getvalue().count("\n") == 1


def test_an_alert_channel_the_channel_gate_refuses_stops_every_command(tmp_path: Path) -> None:
    config = tmp_path / "sstp-bot.toml"
    config.write_text(
        "[slack]\nallowed_channels = ['C0OPS0001']\n[schedule]\nalert_channel = 'C0ALERT01'\n"
        "[servers.vpn01]\nhost='vpn01.corp.example.com'\n"
    )
    code, out, err = run(["--config", str(config), "servers"])
    assert code == ExitStatus.ERROR and out == ""
    assert "schedule.alert_channel" in err and "slack.allowed_channels" in err
