"""commands.scripts.validate_params: the Python-side check before any value reaches a server."""

from __future__ import annotations

import pytest

from commands.errors import UsageError
from commands.scripts import (
    FIX_ACTIONS,
    FIX_SCRIPTS,
    SCRIPTS,
    normalise_thumbprint,
    script_name,
    validate_params,
)

THUMB = "3F1C9A0B7D2E4C6F8A1B2C3D4E5F60718293A4B5"


@pytest.mark.parametrize(
    "value",
    [
        THUMB,
        THUMB.lower(),
        "\u200e" + THUMB,  # certmgr copy/paste (DOMAIN 11)
        " ".join(THUMB[i : i + 2] for i in range(0, 40, 2)),
        ":".join(THUMB[i : i + 2] for i in range(0, 40, 2)),
        f"  {THUMB}\t",
    ],
)
def test_good_thumbprints_are_normalised(value: str) -> None:
    assert validate_params("bind_sstp_certificate", {"Thumbprint": value}) == {"Thumbprint": THUMB}


@pytest.mark.parametrize(
    "value",
    [
        "",
        THUMB[:-1],
        THUMB + "0",
        "5CE8" + "0" * 60,  # a SHA-256 is not a thumbprint
        "G" + THUMB[1:],
        THUMB + ";rm x",
        THUMB[:-1] + "\u0664",  # a non-ASCII digit
        THUMB + "\n" + THUMB,
    ],
)
def test_bad_thumbprints(value: str) -> None:
    with pytest.raises(UsageError):
        validate_params("bind_sstp_certificate", {"Thumbprint": value})


def test_normalise_thumbprint() -> None:
    assert normalise_thumbprint("\u200fab cd:EF") == "ABCDEF"


@pytest.mark.parametrize(
    "value",
    [
        "0.0.0.0:443",
        "[::]:443",
        "10.0.0.5:443",
        "[fe80::1]:8443",
        "vpn.example.com:443",
        "VPN01:443",
        "*:443",
        "255.255.255.255:65535",
        "[2001:db8::5]:443",
        "[::ffff:10.0.0.5]:443",
    ],
)
def test_good_endpoints(value: str) -> None:
    assert validate_params("delete_httpsys_binding", {"Endpoint": value}) == {"Endpoint": value}


@pytest.mark.parametrize(
    "value",
    [
        "0.0.0.0:443; rm x",
        "0.0.0.0:443 & calc",
        "0.0.0.0:443|x",
        "$(calc):443",
        "`calc`:443",
        "0.0.0.0:0",
        "0.0.0.0:65536",
        "0.0.0.0:99999",
        "256.0.0.1:443",
        "0.0.0.0",
        "0.0.0.0:",
        ":443",
        "[::]",
        "[::]443",
        "[zz::1]:443",
        "vpn.example.com",
        "-vpn.example.com:443",
        "vpn..example.com:443",
        "vpn_example.com:443",
        "a b:443",
        "0.0.0.0:443\n",
        "0.0.0.0:\u0664\u0664\u0663",
        "'0.0.0.0:443'",
        "ipport=0.0.0.0:443",
        "",
        # Shaped like an address but not one (DESIGN 2: IP:443, [IPv6]:443 or hostname:443).
        "[.]:443",
        "[:::::]:443",
        "[1.2.3.4]:443",
        "[1::2::3]:443",
        "1.2.3.4.5:443",
        "123:443",
        "010.0.0.5:443",
        "[::]:08443",
    ],
)
def test_bad_endpoints(value: str) -> None:
    with pytest.raises(UsageError):
        validate_params("delete_httpsys_binding", {"Endpoint": value})


@pytest.mark.parametrize("site", ["Default Web Site", "Intranet (HTTPS)", "Site-2", "Ünïcode site"])
def test_good_site_names(site: str) -> None:
    params = {"Site": site, "BindingInformation": "*:443:"}
    assert validate_params("remove_iis_binding", params) == params


@pytest.mark.parametrize(
    "site", ["", 'Default" /x', "Line\nbreak", "Tab\tsite", "x" * 261, "Default Web Site\n"]
)
def test_bad_site_names(site: str) -> None:
    with pytest.raises(UsageError):
        validate_params("remove_iis_binding", {"Site": site, "BindingInformation": "*:443:"})


@pytest.mark.parametrize(
    "info", ["*:443:", "10.0.0.5:443:", "*:443:vpn.example.com", "[::1]:443:", "*:8443:*.example.com"]
)
def test_good_binding_information(info: str) -> None:
    assert (
        validate_params("remove_iis_binding", {"Site": "S", "BindingInformation": info})["BindingInformation"]
        == info
    )


@pytest.mark.parametrize(
    "info",
    [
        "*:443",
        "443",
        "*:443:x']",
        "*:443:a b",
        "*:0:",
        "*:70000:",
        "*:443:\n",
        "*:\u0664\u0664\u0663:",
        "host:443:",
    ],
)
def test_bad_binding_information(info: str) -> None:
    with pytest.raises(UsageError):
        validate_params("remove_iis_binding", {"Site": "S", "BindingInformation": info})


@pytest.mark.parametrize(
    "url",
    [
        "https://+:443/sra_{BA195980-CD49-458b-9E23-C84EE0ADCD75}/",
        "https://*:443/",
        "HTTP://+:80/",
        "https://vpn.example.com:443/",
    ],
)
def test_good_urls(url: str) -> None:
    assert validate_params("delete_url_reservation", {"Url": url}) == {"Url": url}


@pytest.mark.parametrize(
    "url",
    [
        "",
        "ftp://x/",
        "https://",
        "https://+:443/a b/",
        "https://+:443/$(calc)/",
        "https://+:443/`x`/",
        "https://+:443/x/;rm",
        "https://+:443/x'/",
        'https://+:443/x"/',
        "https://+:443/x|y",
        "https://+:443/x/\n",
        "https://+:443/<x>",
        # DOMAIN 14: only a port's root or SSTP's path can block SSTP; other paths are never deleted.
        "https://+:443/C574AC30-5794-4AEE-B1BB-6651C5315029/",
        "https://vpn.example.com:443/app/",
        "https://+:443/sra_{BA195980-CD49-458b-9E23-C84EE0ADCD75}/extra/",
    ],
)
def test_bad_urls(url: str) -> None:
    with pytest.raises(UsageError):
        validate_params("delete_url_reservation", {"Url": url})


def test_int_parameters() -> None:
    assert validate_params("probe", {}) == {}
    assert validate_params("probe", {"EventHours": None}) == {}
    assert validate_params("probe", {"EventHours": 24}) == {"EventHours": 24}
    assert validate_params("probe", {"MaxEvents": 100}) == {"MaxEvents": 100}
    for script, name, value in [
        ("probe", "EventHours", 0),
        ("probe", "EventHours", 721),
        ("probe", "EventHours", True),
        ("probe", "EventHours", "24"),
        ("probe", "EventHours", 2.5),
        ("probe", "MaxEvents", 0),
        ("probe", "MaxEvents", 5001),
        # The restart deadline is the server's restart_timeout_seconds, not a plan parameter.
        ("restart_remoteaccess", "RestartTimeoutSeconds", 120),
        ("bind_sstp_certificate", "RestartTimeoutSeconds", 120),
    ]:
        params = {name: value}
        if script == "bind_sstp_certificate":
            params["Thumbprint"] = THUMB
        with pytest.raises(UsageError):
            validate_params(script, params)


def test_required_unknown_and_foreign_parameters() -> None:
    with pytest.raises(UsageError):
        validate_params("bind_sstp_certificate", {})
    with pytest.raises(UsageError):
        validate_params("restart_iis", {"Force": True})
    with pytest.raises(UsageError):
        validate_params("nope", {})
    with pytest.raises(UsageError):
        validate_params("delete_url_reservation", {"Url": 42})
    assert validate_params("restart_iis", {}) == {}


def test_registry_shape() -> None:
    # Plan actions: four scripts of the same name and two executor sequences (DESIGN 9 [2]).
    assert set(FIX_ACTIONS) == {
        "remove_iis_binding", "restart_iis", "delete_httpsys_binding", "delete_url_reservation",
        "bind_sstp_certificate", "restart_remoteaccess",
    }
    assert {"bind_sstp_certificate", "restart_remoteaccess"}.isdisjoint(SCRIPTS)
    assert set(FIX_SCRIPTS) == set(SCRIPTS) - {"probe", "remoteaccess_state"}
    assert script_name("\ufeff# sstp-bot-script: probe\r\nparam()") == "probe"
    assert script_name("# sstp-bot-script: Probe\n") is None
