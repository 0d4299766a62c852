"""The lab identifies scripts by header and checks parameters against the received param() block."""

from __future__ import annotations

import json

import pytest
from pypsrp.powershell import PowerShell, RunspacePool
from pypsrp.wsman import WSMan

from commands.lab.lab import LAB_PASSWORD, LAB_USERNAME, Lab
from commands.lab.runtime import declared_parameters
from commands.scripts import SCRIPTS, load_script


@pytest.fixture(scope="module")
def lab():
    with Lab(["healthy"]) as lab:
        yield lab


def _invoke(lab: Lab, script: str, *, local_scope: bool | None = True, **params: object) -> PowerShell:
    server = lab.servers["vpn-healthy"]
    wsman = WSMan(server.host, port=server.port, ssl=False, auth="ntlm", username=LAB_USERNAME,
                  password=LAB_PASSWORD, no_proxy=True)
    with wsman, RunspacePool(wsman) as pool:
        ps = PowerShell(pool)
        ps.add_script(script, use_local_scope=local_scope)
        for k, v in params.items():
            ps.add_parameter(k, v)
        ps.invoke()
        return ps


def _message(ps: PowerShell) -> str:
    return str(ps.streams.error[0].exception.adapted_properties["Message"])


def test_the_shipped_probe_runs(lab):
    ps = _invoke(lab, load_script("probe"), EventHours=24)
    assert not ps.had_errors and json.loads(ps.output[0])["schema"] == "sstp-bot/snapshot/v1"


def test_an_unknown_script_is_a_terminating_error(lab):
    ps = _invoke(lab, "Get-Process | ConvertTo-Json")
    assert ps.had_errors and ps.output == []
    assert "not recognized as a shipped sstp-bot script" in _message(ps)


def test_an_unknown_header_name_is_rejected(lab):
    ps = _invoke(lab, "# sstp-bot-script: format_disk\nparam()\n")
    assert ps.had_errors


def test_an_undeclared_parameter_is_rejected_and_nothing_changes(lab):
    twin = lab.servers["vpn-healthy"].twin
    before = twin.copy_state()
    ps = _invoke(lab, load_script("delete_httpsys_binding"), Endpoint="0.0.0.0:443", Force=True)
    assert ps.had_errors and "cannot be found that matches parameter name 'Force'" in _message(ps)
    # A script text whose param() block does not declare a parameter it receives: rejected too.
    text = "# sstp-bot-script: delete_httpsys_binding\nparam([string]$Other)\n"
    ps = _invoke(lab, text, Endpoint="0.0.0.0:443")
    assert ps.had_errors and "Endpoint" in _message(ps)
    assert twin.copy_state() == before


def test_an_invalid_value_fails_validation(lab):
    ps = _invoke(lab, load_script("set_sstp_certificate"), Thumbprint="not-a-thumbprint")
    assert ps.had_errors and "Cannot validate argument" in _message(ps)


@pytest.mark.parametrize("local_scope", [None, False])
def test_a_script_not_sent_in_a_local_scope_is_refused_and_changes_nothing(lab, local_scope):
    """DOMAIN 14: without useLocalScope the script is dot-sourced and its variables leak into the next
    script on the runspace; the lab refuses it, as an error the client sees."""
    twin = lab.servers["vpn-healthy"].twin
    before = twin.copy_state()
    ps = _invoke(lab, load_script("delete_httpsys_binding"), local_scope=local_scope, Endpoint="0.0.0.0:443")
    assert ps.had_errors and ps.output == []
    assert "not sent in a local scope" in _message(ps)
    assert twin.copy_state() == before


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_declared_parameters_of_the_shipped_scripts_match_the_registry(name):
    declared = declared_parameters(load_script(name)) or []
    assert [d.lower() for d in declared] == [s.name.lower() for s in SCRIPTS[name]]


def test_declared_parameters_ignore_strings_and_comments():
    text = (
        "# sstp-bot-script: probe\n<# $NotAParam #>\nparam(\n  # $Nope\n"
        "  [ValidatePattern('^[0-9]{2}$x')][int]$EventHours = 24,\n  [string]$Name = \"$env:X\"\n)\n$Later = 1\n"
    )
    assert declared_parameters(text) == ["EventHours", "Name"]


# --- the lab remembers deserialized messages by their exact bytes: nothing may go stale ------------

def test_the_same_script_text_is_refused_without_local_scope_after_it_ran_with_it(lab):
    """The endpoint reuses the deserialized form of a message it has seen; useLocalScope is part of
    the message, so the same text sent without it afterwards is still refused."""
    runtime = lab.servers["vpn-healthy"].endpoint.executor
    text = load_script("remoteaccess_state")
    first = _invoke(lab, text)
    assert not first.had_errors and first.output
    second = _invoke(lab, text, local_scope=False)
    assert second.had_errors and second.output == []
    assert "not sent in a local scope" in _message(second)
    third = _invoke(lab, text)  # and with it again: accepted
    assert not third.had_errors and third.output
    assert runtime.received[-3:] == [("remoteaccess_state", True), ("remoteaccess_state", False),
                                     ("remoteaccess_state", True)]


def test_a_repeated_probe_answers_the_twin_as_it_is_now(lab):
    """Same bytes, same parameters: the answer still follows the twin's state and the parameters."""
    twin = lab.servers["vpn-healthy"].twin
    before = json.loads(_invoke(lab, load_script("probe"), EventHours=24).output[0])
    with twin.lock:
        name = twin.state.computer_name
        twin.state.computer_name = "RENAMED01"
    try:
        after = json.loads(_invoke(lab, load_script("probe"), EventHours=24).output[0])
    finally:
        with twin.lock:
            twin.state.computer_name = name
    assert before["host"]["computer_name"] == name
    assert after["host"]["computer_name"] == "RENAMED01"
    ps = _invoke(lab, load_script("probe"), EventHours="not-a-number")  # other bytes: validated again
    assert ps.had_errors and "Cannot validate argument" in _message(ps)
