"""Readable snapshot fixtures: start from `healthy()` and mutate the dict.

Certificates are real DER from the lab PKI (commands.lab.pki), valid 2026-01-01..2036-01-01 unless a
test asks otherwise; tests pass `NOW` explicitly.
"""

from __future__ import annotations

import base64
import copy
from datetime import UTC, datetime
from functools import cache
from typing import Any

from commands.diagnosis import IIS_APP_ID, SSTP_APP_ID
from commands.lab.pki import IssuedCertificate, issue_certificate
from commands.model import Finding
from commands.server import ServerConfig

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
PUBLIC_NAME = "vpn.example.com"
ADFS_APP_ID = "{5d89a20c-beab-4389-9447-324788eb944a}"
SSTP_URL = "https://+:443/sra_{BA195980-CD49-458b-9E23-C84EE0ADCD75}/"

Snap = dict[str, Any]


@cache
def sstp_cert() -> IssuedCertificate:
    """The certificate SSTP is bound to in the healthy snapshot."""
    return issue_certificate(common_name=PUBLIC_NAME, dns_names=(PUBLIC_NAME,))


@cache
def iis_cert() -> IssuedCertificate:
    """A web server certificate IIS binds in the broken snapshots."""
    return issue_certificate(common_name="www.example.com", dns_names=("www.example.com", "intranet.example.com"))


@cache
def machine_cert() -> IssuedCertificate:
    """The computer's auto-enrolled machine certificate (Client Authentication only)."""
    return issue_certificate(
        common_name="VPN01.corp.example.com",
        dns_names=("VPN01.corp.example.com",),
        server_auth=False,
        client_auth=True,
    )


def cert(**kwargs: Any) -> IssuedCertificate:
    kwargs.setdefault("common_name", PUBLIC_NAME)
    kwargs.setdefault("dns_names", (kwargs["common_name"],))
    return issue_certificate(**kwargs)


def cert_entry(c: IssuedCertificate, *, has_private_key: bool = True, friendly_name: str = "") -> dict[str, Any]:
    return {
        "thumbprint": c.thumbprint,
        "has_private_key": has_private_key,
        "friendly_name": friendly_name,
        "der": base64.b64encode(c.der).decode("ascii"),
    }


def binding(endpoint: str, c: IssuedCertificate | str | None, app_id: str = SSTP_APP_ID) -> dict[str, Any]:
    cert_hash = c.thumbprint if isinstance(c, IssuedCertificate) else c
    return {"endpoint": endpoint, "cert_hash": cert_hash, "app_id": app_id, "store": "MY", "ctl_store": None}


def iis_binding(c: IssuedCertificate | None, *, site: str = "Default Web Site", info: str = "*:443:") -> dict[str, Any]:
    return {"site": site, "binding_information": info, "cert_hash": c.thumbprint if c else None, "ssl_flags": 0}


def healthy(port: int = 443) -> Snap:
    """A healthy VPN server: SSTP on `port`, bound in HTTP.sys under SSTP's AppId, IIS installed without https."""
    c = sstp_cert()
    return copy.deepcopy(
        {
            "schema": "sstp-bot/snapshot/v1",
            "collected_at": "2026-11-25T11:59:30Z",
            "host": {
                "computer_name": "VPN01",
                "os_caption": "Microsoft Windows Server 2022 Standard",
                "os_build": "20348",
                "ps_version": "5.1.20348.2849",
                "is_admin": True,
            },
            "services": {
                "RemoteAccess": {"status": "Running", "start_type": "Automatic"},
                "SstpSvc": {"status": "Running", "start_type": "Manual"},
                "W3SVC": {"status": "Running", "start_type": "Automatic"},
                "WAS": {"status": "Running", "start_type": "Manual"},
            },
            "sstp": {
                "sha256_hash": c.sha256,
                "sha1_hash": c.thumbprint,
                "use_https": True,
                "is_hash_configured_by_admin": True,
                "listener_port": port,
                "remote_access": {"vpn_status": "Installed", "thumbprint": c.thumbprint},
            },
            "http_sys": {
                "ip_bindings": [binding(f"0.0.0.0:{port}", c), binding(f"[::]:{port}", c)],
                "sni_bindings": [],
                "url_reservations": [
                    {
                        "url": SSTP_URL.replace(":443/", f":{port}/"),
                        "sddl": "D:(A;;GA;;;S-1-5-80-3435701886-799518250-3791383489-3228296122-2938884314)(A;;GA;;;BA)(A;;GA;;;SY)",
                    }
                ],
            },
            "iis": {"installed": True, "https_bindings": []},
            "listeners": [
                {"local_address": "0.0.0.0", "port": port, "pid": 4, "process": "System"},
                {"local_address": "::", "port": port, "pid": 4, "process": "System"},
            ],
            "certificates": [cert_entry(c, friendly_name="VPN"), cert_entry(machine_cert())],
            "vpn_connections": 12,
            "events": [],
            "probe_errors": [],
        }
    )


def with_iis_binding(snap: Snap, c: IssuedCertificate | None = None) -> Snap:
    """The seed's error: IIS got an https binding on 443 and took over 0.0.0.0:443 with its certificate."""
    c = c or iis_cert()
    snap["certificates"].append(cert_entry(c))
    snap["iis"]["https_bindings"].append(iis_binding(c))
    snap["http_sys"]["ip_bindings"][0] = binding("0.0.0.0:443", c, IIS_APP_ID)
    return snap


def add_cert(snap: Snap, c: IssuedCertificate, *, has_private_key: bool = True) -> Snap:
    snap["certificates"].append(cert_entry(c, has_private_key=has_private_key))
    return snap


def use_sstp_cert(
    snap: Snap, c: IssuedCertificate, *, has_private_key: bool = True, rebind: bool = True, keep_old: bool = False
) -> Snap:
    """Make `c` the SSTP certificate (in the store, in the registry and, with rebind, in HTTP.sys).

    The previous SSTP certificate leaves the store unless `keep_old`.
    """
    if not keep_old:
        old = snap["sstp"]["sha1_hash"]
        snap["certificates"] = [e for e in snap["certificates"] if e["thumbprint"] != old]
    if all(e["thumbprint"] != c.thumbprint for e in snap["certificates"]):
        snap["certificates"].append(cert_entry(c, has_private_key=has_private_key))
    snap["sstp"]["sha256_hash"] = c.sha256
    snap["sstp"]["sha1_hash"] = c.thumbprint
    snap["sstp"]["remote_access"]["thumbprint"] = c.thumbprint
    if rebind:
        for b in snap["http_sys"]["ip_bindings"]:
            b["cert_hash"] = c.thumbprint
    return snap


def server(**kwargs: Any) -> ServerConfig:
    kwargs.setdefault("name", "vpn01")
    kwargs.setdefault("host", "vpn01.corp.example.com")
    kwargs.setdefault("public_name", PUBLIC_NAME)
    return ServerConfig(**kwargs)


def ids(findings: list[Finding]) -> set[str]:
    return {f.id for f in findings}


def problems(findings: list[Finding]) -> set[str]:
    """IDs of the critical and warning findings (what makes a server unhealthy)."""
    return {f.id for f in findings if f.severity in ("critical", "warning")}


def only(findings: list[Finding], finding_id: str) -> Finding:
    matching = [f for f in findings if f.id == finding_id]
    assert len(matching) == 1, f"expected one {finding_id}, got {[f.id for f in findings]}"
    return matching[0]
