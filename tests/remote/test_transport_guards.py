"""Transport guards of the PSRP runner (issue 14: items 4, 6, 8; issue 9: credssp), through the lab."""

from __future__ import annotations

import dataclasses
import sys
import time

import pytest

from commands.errors import ConfigError, RemoteError
from commands.lab.lab import LAB_PASSWORD, Lab
from commands.psrp import MAX_ANSWER_WIRE_BYTES, RemoteSession


@pytest.fixture(scope="module")
def trickle_lab():
    with Lab(["healthy"], faults={"vpn-healthy": ["trickle"]}) as lab:
        yield lab


@pytest.mark.slow
def test_a_server_that_trickles_its_answer_cannot_hold_a_check_past_operation_timeout(trickle_lab):
    """Each read gets a byte in time, so requests' per-read timeout never fires; the wall-clock deadline
    per exchange does (operation_timeout 1 s here; one answer would take about a minute)."""
    cfg = trickle_lab.server_config("vpn-healthy")
    assert cfg.operation_timeout == 1.0
    start = time.monotonic()
    with pytest.raises(RemoteError) as err, RemoteSession(cfg, LAB_PASSWORD) as session:
        session.probe()
    elapsed = time.monotonic() - start
    assert err.value.kind == "timeout", err.value.message
    assert "operation_timeout" in err.value.message
    assert elapsed < 8, elapsed


@pytest.fixture
def huge_lab():
    with Lab(["large-probe"]) as lab:
        twin = lab.servers["vpn-large"].twin
        filler = next(c for c in twin.state.certificates if c.friendly_name)
        filler.friendly_name = "F" * (14 * 1024 * 1024)  # a 14 MB probe answer: over the 10 MB limit
        yield lab


@pytest.mark.slow
def test_a_probe_answer_over_the_snapshot_limit_is_refused_while_it_is_read(huge_lab):
    server = huge_lab.servers["vpn-large"]
    server.endpoint.clear_log()
    with pytest.raises(RemoteError) as err, RemoteSession(huge_lab.server_config("vpn-large"), LAB_PASSWORD) as session:
        session.probe()
    assert err.value.kind == "bad_output"
    assert "10 MB" in err.value.message and "reading stopped" in err.value.message
    # It stopped at the cap: the answer was not read to its end.
    assert MAX_ANSWER_WIRE_BYTES < 14 * 1024 * 1024 * 4 // 3


@pytest.fixture(scope="module")
def basic_lab():
    with Lab(["healthy"], tls=True, auth="basic") as lab:
        yield lab


def test_a_non_latin1_password_with_basic_is_a_clear_config_error_naming_no_character(basic_lab):
    server = basic_lab.servers["vpn-healthy"]
    server.endpoint.clear_log()
    password = "Pässwörd-€-ŝecret"
    with pytest.raises(ConfigError) as err:
        RemoteSession(basic_lab.server_config("vpn-healthy"), password).open()
    text = str(err.value)
    assert "Basic" in text and "Latin-1" in text
    assert password not in text
    for ch in set(password) - set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ-"):
        assert ch not in text, ch
    assert server.requests == []  # refused before anything was sent


def test_credssp_without_its_package_names_the_extra(basic_lab, monkeypatch):
    monkeypatch.setitem(sys.modules, "requests_credssp", None)  # as if the extra were not installed
    cfg = dataclasses.replace(basic_lab.server_config("vpn-healthy"), auth="credssp")
    with pytest.raises(ConfigError) as err:
        RemoteSession(cfg, LAB_PASSWORD).open()
    assert "credssp extra" in str(err.value) and "sstp-bot[credssp]" in str(err.value)


def test_kerberos_without_gssapi_names_the_extra_and_sends_nothing(basic_lab, monkeypatch):
    """Without the GSSAPI binding pyspnego failed deep in the exchange, reported as bad_output; it is
    a configuration of the bot's host, said before any request."""
    import importlib.util

    if sys.platform == "win32":
        pytest.skip("Windows authenticates with SSPI, without gssapi")
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "gssapi" else real(name, *a))
    server = basic_lab.servers["vpn-healthy"]
    server.endpoint.clear_log()
    cfg = dataclasses.replace(basic_lab.server_config("vpn-healthy"), auth="kerberos")
    with pytest.raises(ConfigError) as err:
        RemoteSession(cfg, LAB_PASSWORD).open()
    assert "kerberos extra" in str(err.value) and "sstp-bot[kerberos]" in str(err.value)
    assert server.requests == []


def test_credssp_with_the_extra_installed_speaks_credssp(basic_lab):
    """The lab does not accept CredSSP: the error is about authentication, never bad_output."""
    pytest.importorskip("requests_credssp")
    cfg = dataclasses.replace(basic_lab.server_config("vpn-healthy"), auth="credssp")
    with pytest.raises(RemoteError) as err:
        RemoteSession(cfg, LAB_PASSWORD).open()
    assert err.value.kind in ("auth", "tls"), err.value.message
