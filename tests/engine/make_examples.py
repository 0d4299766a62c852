"""Regenerate the example snapshots in commands/examples/ (real DER from the lab PKI).

    PYTHONPATH=. python -m tests.engine.make_examples

Certificates are valid 2026-01-01..2036-01-01 (renewals until 2037) so the examples stay valid;
tests pass `now` explicitly. Keys are random, so a rerun changes every hash: commit the result.
"""

from __future__ import annotations

import base64
import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from commands.diagnosis import IIS_APP_ID
from commands.lab.pki import issue_certificate
from tests.engine.builder import (
    add_cert,
    binding,
    cert_entry,
    healthy,
    iis_binding,
    iis_cert,
    sstp_cert,
    with_iis_binding,
)

EXAMPLES = Path(__file__).resolve().parents[2] / "commands" / "examples"
RENEWAL_NOT_AFTER = datetime(2037, 1, 1, tzinfo=UTC)


def examples() -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    out["healthy"] = healthy()

    snap = with_iis_binding(healthy())
    snap["events"] = [
        {
            "provider": "Microsoft-Windows-RasSstp",
            "id": 21,
            "time": "2026-11-25T11:58:00Z",
            "message": "The SSTP service was unable to get the hash of the certificate configured with HTTP.",
        }
    ]
    out["iis-binding"] = snap

    snap = healthy()
    snap["http_sys"]["ip_bindings"][1] = binding("[::]:443", iis_cert(), "{5d89a20c-beab-4389-9447-324788eb944a}")
    add_cert(snap, iis_cert())
    out["foreign-binding"] = snap

    snap = healthy()
    renewal = issue_certificate(
        common_name="vpn.example.com",
        dns_names=("vpn.example.com",),
        not_before=datetime(2026, 6, 1, tzinfo=UTC),
        not_after=RENEWAL_NOT_AFTER,
    )
    add_cert(snap, renewal)
    out["renewal-not-bound"] = snap

    snap = healthy()
    snap["certificates"] = [cert_entry(renewal, friendly_name="VPN 2026")] + [
        c for c in snap["certificates"] if c["thumbprint"] != sstp_cert().thumbprint
    ]
    snap["events"] = [
        {
            "provider": "Microsoft-Windows-RasSstp",
            "id": 21,
            "time": "2026-11-25T10:02:00Z",
            "message": "The SSTP service was unable to get the hash of the certificate configured with HTTP.",
        }
    ]
    out["cert-not-found"] = snap

    snap = healthy()
    snap["http_sys"]["url_reservations"].append({"url": "https://+:443/", "sddl": "D:(A;;GX;;;WD)"})
    out["url-reservation"] = snap

    snap = healthy()
    snap["services"]["RemoteAccess"]["status"] = "Stopped"
    snap["listeners"] = []
    snap["vpn_connections"] = 0
    out["remoteaccess-stopped"] = snap

    snap = healthy(8443)
    add_cert(snap, iis_cert())
    snap["iis"]["https_bindings"].append(iis_binding(iis_cert()))
    snap["http_sys"]["ip_bindings"] += [binding("0.0.0.0:443", iis_cert(), IIS_APP_ID)]
    snap["listeners"].append({"local_address": "0.0.0.0", "port": 443, "pid": 4, "process": "System"})
    out["healthy-sstp-8443-iis-443"] = snap
    out.update(release2_examples())
    return out


SSTP_REGISTERED_URL = "HTTPS://+:443/SRA_{BA195980-CD49-458B-9E23-C84EE0ADCD75}/"


def _client_view(seen: Any, sstp_status: int) -> dict[str, Any]:
    """What a VPN client sees (DESIGN 11) when the server serves `seen`."""

    def handshake(sni: str | None) -> dict[str, Any]:
        return {"sni": sni, "ok": True, "error": None, "tls_version": "TLSv1.2", "cert_sha256": seen.sha256,
                "cert_sha1": seen.thumbprint, "der": base64.b64encode(seen.der).decode("ascii")}

    return {
        "endpoint": "vpn01.corp.example.com:443",
        "collected_at": "2026-11-25T11:59:31Z",
        "handshakes": [handshake(None), handshake("vpn.example.com")],
        "sstp": {"sni": "vpn.example.com", "ok": sstp_status == 200, "http_status": sstp_status, "error": None},
    }


def _release2_fields(snap: dict[str, Any]) -> dict[str, Any]:
    """The optional snapshot fields of the second release (DESIGN 3 [2]), as a healthy server has them."""
    snap["http_sys"]["registered_urls"] = [SSTP_REGISTERED_URL]
    for entry in snap["certificates"]:
        entry["private_key_usable"] = entry["has_private_key"]
    snap["sstp"]["remote_access"]["directaccess"] = False
    snap["events_omitted"] = 0
    snap["endpoint"] = {"configuration_name": "Microsoft.PowerShell", "module_version": None,
                        "language_mode": "FullLanguage"}
    snap["client_view"] = _client_view(sstp_cert(), 200)
    return snap


def release2_examples() -> dict[str, dict[str, Any]]:
    """Examples with the second release's fields: client view, registered URLs, usable keys."""
    out: dict[str, dict[str, Any]] = {"healthy-release2": _release2_fields(healthy())}

    snap = _release2_fields(with_iis_binding(healthy()))
    snap["http_sys"]["registered_urls"] = [SSTP_REGISTERED_URL, "HTTPS://+:443/"]
    snap["client_view"] = _client_view(iis_cert(), 200)
    out["client-view-iis-binding"] = snap

    snap = _release2_fields(healthy())
    snap["http_sys"]["registered_urls"] = ["HTTPS://+:443/ADFS/"]
    snap["client_view"] = _client_view(sstp_cert(), 404)
    out["sstp-not-registered"] = snap
    return out


def main() -> None:
    EXAMPLES.mkdir(parents=True, exist_ok=True)
    # `--release2` writes only the second release's examples (the others keep their hashes).
    chosen = release2_examples() if "--release2" in sys.argv else examples()
    for name, snap in chosen.items():
        (EXAMPLES / f"{name}.json").write_text(json.dumps(snap, indent=2) + "\n", encoding="utf-8")
        print(f"wrote {name}.json")


if __name__ == "__main__":
    main()
