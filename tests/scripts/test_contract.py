"""The scripts agree with `commands.scripts`: file set, header line, and the declared parameters."""

from __future__ import annotations

import re

import pytest

from commands.errors import UsageError
from commands.scripts import SCRIPTS, load_script, script_name, validate_params
from tests.scripts.pwsh_ast import (
    SCRIPTS_DIR,
    DeclaredParam,
    declared_params,
    parse,
    script_source,
)

DEFAULTS = {"EventHours": "24", "MaxEvents": "100"}


def _params(name: str) -> list[DeclaredParam]:
    return declared_params(parse(script_source(name).encode("utf-8")))


def test_shipped_files_equal_registry() -> None:
    assert {p.stem for p in SCRIPTS_DIR.glob("*.ps1")} == set(SCRIPTS)


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_header_line(name: str) -> None:
    source = script_source(name)
    assert not source.startswith("\ufeff")
    assert source.split("\n", 1)[0] == f"# sstp-bot-script: {name}"
    assert script_name(source) == name
    assert load_script(name) == source


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_cmdletbinding_and_param_block(name: str) -> None:
    source = script_source(name)
    assert re.search(r"^\[CmdletBinding\(\)\]\s*\nparam\(", source, re.MULTILINE)


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_params_match_registry(name: str) -> None:
    declared = _params(name)
    specs = SCRIPTS[name]
    assert [p.name for p in declared] == [s.name for s in specs]
    for param, spec in zip(declared, specs, strict=True):
        assert param.type_name == ("int" if spec.kind is int else "string"), param
        assert param.mandatory == spec.required, param
        if spec.required:
            assert param.default is None, param
        else:
            assert param.default == DEFAULTS[param.name], param
        if spec.kind is int:
            assert param.attributes["validaterange"] == [f"{spec.minimum}, {spec.maximum}"]
        else:
            assert "validatenotnullorempty" in param.attributes, param
            # A free-form value has one pattern; a closed choice (control_remoteaccess -Action) a set.
            assert len(param.attributes.get("validatepattern", param.attributes.get("validateset", []))) == 1, param


def test_thumbprint_pattern_is_the_documented_one() -> None:
    for script in ("set_sstp_certificate", "add_sstp_httpsys_binding"):
        thumb = next(p for p in _params(script) if p.name == "Thumbprint")
        assert thumb.attributes["validatepattern"] == ["'^[0-9A-Fa-f]{40}\\z'"]


def test_control_remoteaccess_takes_only_start_or_stop() -> None:
    action = next(p for p in _params("control_remoteaccess") if p.name == "Action")
    assert action.attributes["validateset"] == ["'Start', 'Stop'"]
    assert validate_params("control_remoteaccess", {"Action": "Stop"}) == {"Action": "Stop"}
    for bad in ("Restart", "stop; calc", ""):
        with pytest.raises(UsageError):
            validate_params("control_remoteaccess", {"Action": bad})


def _dotnet_pattern(param: DeclaredParam) -> re.Pattern[str]:
    """The ValidatePattern regex as Python sees it (single-quoted PowerShell string; .NET \\z = Python \\Z)."""
    literal = param.attributes["validatepattern"][0]
    assert literal.startswith("'") and literal.endswith("'")
    body = literal[1:-1].replace("''", "'").replace(r"\z", r"\Z")
    return re.compile(body, re.IGNORECASE)  # ValidatePattern ignores case


# (script, parameter, value, other required parameters)
SAMPLES: list[tuple[str, str, str, dict[str, str]]] = [
    *[
        (script, "Thumbprint", v, {"Endpoint": "0.0.0.0:443"} if script == "add_sstp_httpsys_binding" else {})
        for script in ("set_sstp_certificate", "add_sstp_httpsys_binding")
        for v in (
            "3F1C9A0B7D2E4C6F8A1B2C3D4E5F60718293A4B5",
            "3f1c9a0b7d2e4c6f8a1b2c3d4e5f60718293a4b5",
            "3F1C9A0B7D2E4C6F8A1B2C3D4E5F60718293A4B",
            "3F1C9A0B7D2E4C6F8A1B2C3D4E5F60718293A4B5; rm x",
            "ZZ1C9A0B7D2E4C6F8A1B2C3D4E5F60718293A4B5",
        )
    ],
    *[
        ("delete_httpsys_binding", "Endpoint", v, {})
        for v in (
            "0.0.0.0:443",
            "[::]:443",
            "10.0.0.5:8443",
            "vpn.example.com:443",
            "*:443",
            "*.example.com:443",  # wildcard SNI binding: Python accepts it, so must the script
            "*.example.com:443 & calc",
            "0.0.0.0:443; rm x",
            "0.0.0.0:443\n",
            "vpn.example.com",
            "a b:443",
            "$(calc):443",
            "[::]:443 & calc",
            "0.0.0.0:443'",
        )
    ],
    *[
        ("add_sstp_httpsys_binding", "Endpoint", v, {"Thumbprint": "3F1C9A0B7D2E4C6F8A1B2C3D4E5F60718293A4B5"})
        for v in ("0.0.0.0:443", "[::]:8443", "10.0.0.5:443", "vpn.example.com:443", "0.0.0.0:443; rm x", "[::1]:443")
    ],
    *[
        ("delete_url_reservation", "Url", v, {})
        for v in (
            "https://+:443/sra_{BA195980-CD49-458b-9E23-C84EE0ADCD75}/",
            "https://*:443/",
            "http://+:80/x/",
            "https://+:443/$(calc)/",
            "https://+:443/a b/",
            "ftp://x/",
            "https://+:443/'x'/",
            "https://+:443/x/\n",
        )
    ],
    *[
        ("remove_iis_binding", "Site", v, {"BindingInformation": "*:443:"})
        for v in ("Default Web Site", "Intranet (HTTPS)", 'Bad"Site', "Line\nbreak", "", "Web Site\\", "A\\B")
    ],
    *[
        ("remove_iis_binding", "BindingInformation", v, {"Site": "Default Web Site"})
        for v in (
            "*:443:",
            "10.0.0.5:443:vpn.example.com",
            "[::1]:443:",
            "[fe80::1%12]:443:",
            "*:443:x']",
            "*:443:a b",
            "*:443",
            "*:443:\n",
        )
    ],
]


@pytest.mark.parametrize(("script", "param", "value", "others"), SAMPLES)
def test_server_pattern_accepts_whatever_python_accepts(
    script: str, param: str, value: str, others: dict[str, str]
) -> None:
    """The bot never sends a value the script's own param() validation would refuse."""
    declared = next(p for p in _params(script) if p.name == param)
    pattern = _dotnet_pattern(declared)
    try:
        clean = validate_params(script, {param: value, **others})
    except UsageError:
        return
    assert pattern.search(str(clean[param])), (script, param, value)


INJECTIONS = [
    "0.0.0.0:443; rm x",
    "0.0.0.0:443\n",
    "$(calc):443",
    "[::]:443 & calc",
    "0.0.0.0:443'",
    "*.example.com:443 & calc",
    "*.*.example.com:443",
    "a.*.example.com:443",
]


@pytest.mark.parametrize("value", INJECTIONS)
def test_server_pattern_refuses_injection_on_its_own(value: str) -> None:
    """Second line of defence: the script's pattern alone refuses these endpoints."""
    declared = next(p for p in _params("delete_httpsys_binding") if p.name == "Endpoint")
    assert not _dotnet_pattern(declared).search(value)


def test_docs_describe_every_script_and_parameter() -> None:
    docs = (SCRIPTS_DIR.parents[1] / "docs" / "scripts.md").read_text(encoding="utf-8")
    for name, specs in SCRIPTS.items():
        assert f"## {name}" in docs, name
        for spec in specs:
            assert f"`{spec.name}`" in docs, (name, spec.name)


def test_set_sstp_certificate_keeps_the_configured_certificate_even_on_directaccess() -> None:
    """Keeping the certificate SSTP already uses changes no setting, so the comparison comes before
    the DirectAccess refusal (DOMAIN 14): a plan that rebinds it after IIS took port 443 can run on a
    DirectAccess server. The lab's twin answers in the same order (tests/scenarios)."""
    source = script_source("set_sstp_certificate")
    already = source.index("(Get-ConfiguredThumbprint $remoteAccess) -eq $Thumbprint")
    directaccess = source.index("[string]$daStatus.Value -eq 'Installed'")
    setting = source.index("Set-RemoteAccess -SslCertificate $certificate")
    assert already < directaccess < setting
