"""Black-box helpers: build snapshot v1 documents (DESIGN 3) with real certificates and run
`sstp-bot diagnose --json` on them (DESIGN 7).

Everything here is written from DESIGN.md / DOMAIN.md only; no product module is imported except the
CLI entry point `bot.cli.main`.
"""

from __future__ import annotations

import atexit
import base64
import contextlib
import copy
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import AuthorityInformationAccessOID, ExtendedKeyUsageOID, NameOID

REPO = Path(__file__).resolve().parents[2]
PYTHON = sys.executable

SSTP_APPID = "{ba195980-cd49-458b-9e23-c84ee0adcd75}"
IIS_APPID = "{4dc3e181-e14b-4a21-b022-59fc669b0914}"
ADFS_APPID = "{5d89a20c-beab-4389-9447-324788eb944a}"
SSTP_URL = "https://+:443/sra_{BA195980-CD49-458b-9E23-C84EE0ADCD75}/"
SSTP_SDDL = (
    "D:(A;;GA;;;S-1-5-80-3435701886-799518250-3791383489-3228296122-2938884314)(A;;GA;;;BA)(A;;GA;;;SY)"
)
PUBLIC = "vpn.example.com"

NOW = datetime.now(UTC).replace(microsecond=0)


def iso(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# --------------------------------------------------------------------------- certificates


@cache
def rsa_key(bits: int = 2048, slot: int = 0) -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


@cache
def ec_key(slot: int = 0) -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@cache
def ca() -> tuple[x509.Certificate, rsa.RSAPrivateKey]:
    key = rsa_key(2048, 99)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "contract-test Root CA")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - timedelta(days=3650))
        .not_valid_after(NOW + timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    return cert, key


@dataclass(frozen=True)
class Cert:
    der: bytes
    sha1: str
    sha256: str

    def entry(self, has_private_key: bool = True, friendly_name: str = "") -> dict[str, Any]:
        return {
            "thumbprint": self.sha1,
            "has_private_key": has_private_key,
            "friendly_name": friendly_name,
            "der": base64.b64encode(self.der).decode(),
        }


_CERT_CACHE: dict[tuple, Cert] = {}


def make_cert(
    cn: str | None = PUBLIC,
    sans: tuple[str, ...] | None = (PUBLIC,),
    *,
    nb_days: float = -30,
    na_days: float = 300,
    eku: tuple | None = (ExtendedKeyUsageOID.SERVER_AUTH,),
    bits: int = 2048,
    key_kind: str = "rsa",
    sig: str = "sha256",
    crl: bool = True,
    ocsp: bool = False,
    self_signed: bool = False,
    tag: str = "",
) -> Cert:
    """A leaf certificate valid from NOW+nb_days to NOW+na_days (days, may be fractional)."""
    cache_key = (cn, sans, nb_days, na_days, eku, bits, key_kind, sig, crl, ocsp, self_signed, tag)
    if cache_key in _CERT_CACHE:
        return _CERT_CACHE[cache_key]
    key: Any = ec_key() if key_kind == "ec" else rsa_key(bits)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)] if cn else [])
    ca_cert, ca_key = ca()
    issuer = subject if self_signed else ca_cert.subject
    signer: Any = key if self_signed else ca_key
    b = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW + timedelta(days=nb_days))
        .not_valid_after(NOW + timedelta(days=na_days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
    )
    if sans:
        b = b.add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in sans]), critical=False)
    if eku is not None:
        b = b.add_extension(x509.ExtendedKeyUsage(list(eku)), critical=False)
    if crl:
        b = b.add_extension(
            x509.CRLDistributionPoints(
                [
                    x509.DistributionPoint(
                        full_name=[x509.UniformResourceIdentifier("http://pki.example.com/root.crl")],
                        relative_name=None,
                        reasons=None,
                        crl_issuer=None,
                    )
                ]
            ),
            critical=False,
        )
    if ocsp:
        b = b.add_extension(
            x509.AuthorityInformationAccess(
                [
                    x509.AccessDescription(
                        AuthorityInformationAccessOID.OCSP,
                        x509.UniformResourceIdentifier("http://ocsp.example.com"),
                    )
                ]
            ),
            critical=False,
        )
    cert = b.sign(signer, hashes.SHA256())
    der = cert.public_bytes(serialization.Encoding.DER)
    if sig != "sha256":
        # cryptography refuses to sign with SHA-1/MD5: relabel the signature algorithm (same length,
        # valid DER; the signature no longer verifies, which no diagnosis needs).
        assert key_kind == "rsa"
        sha256_rsa = bytes.fromhex("06092A864886F70D01010B")
        target = {"sha1": "06092A864886F70D010105", "md5": "06092A864886F70D010104"}[sig]
        assert der.count(sha256_rsa) == 2
        der = der.replace(sha256_rsa, bytes.fromhex(target))
        cert = x509.load_der_x509_certificate(der)
    result = Cert(
        der=der,
        sha1=cert.fingerprint(hashes.SHA1()).hex().upper(),
        sha256=cert.fingerprint(hashes.SHA256()).hex().upper(),
    )
    _CERT_CACHE[cache_key] = result
    return result


def main_cert() -> Cert:
    return make_cert()


def other_cert() -> Cert:
    """A valid certificate for another name (the IIS web site's)."""
    return make_cert("www.example.com", ("www.example.com",), tag="www")


# --------------------------------------------------------------------------- snapshots


def binding(endpoint: str, cert_hash: str, app_id: str = SSTP_APPID) -> dict[str, Any]:
    return {"endpoint": endpoint, "cert_hash": cert_hash, "app_id": app_id, "store": "MY", "ctl_store": None}


def iis_binding(cert_hash: str, info: str = "*:443:", site: str = "Default Web Site") -> dict[str, Any]:
    return {"site": site, "binding_information": info, "cert_hash": cert_hash, "ssl_flags": 0}


def event(eid: int, hours_ago: float = 1, provider: str = "Microsoft-Windows-RasSstp") -> dict[str, Any]:
    return {"provider": provider, "id": eid, "time": iso(NOW - timedelta(hours=hours_ago)), "message": "x"}


def healthy(
    cert: Cert | None = None, port: int = 443, extra_certs: list[dict] | None = None
) -> dict[str, Any]:
    """A healthy SSTP server whose certificate is `cert` (default: main_cert())."""
    cert = cert or main_cert()
    return {
        "schema": "sstp-bot/snapshot/v1",
        "collected_at": iso(NOW),
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
            "sha256_hash": cert.sha256,
            "sha1_hash": cert.sha1,
            "use_https": True,
            "is_hash_configured_by_admin": True,
            "listener_port": port,
            "remote_access": {"vpn_status": "Installed", "thumbprint": cert.sha1},
        },
        "http_sys": {
            "ip_bindings": [binding(f"0.0.0.0:{port}", cert.sha1), binding(f"[::]:{port}", cert.sha1)],
            "sni_bindings": [],
            "url_reservations": [{"url": SSTP_URL.replace(":443/", f":{port}/"), "sddl": SSTP_SDDL}],
        },
        "iis": {"installed": True, "https_bindings": []},
        "listeners": [
            {"local_address": "0.0.0.0", "port": port, "pid": 4, "process": "System"},
            {"local_address": "::", "port": port, "pid": 4, "process": "System"},
        ],
        "certificates": [cert.entry(friendly_name="VPN"), *(extra_certs or [])],
        "vpn_connections": 12,
        "events": [],
        "probe_errors": [],
    }


def clone(snap: dict[str, Any]) -> dict[str, Any]:
    return copy.deepcopy(snap)


# --------------------------------------------------------------------------- running the CLI


@dataclass
class Result:
    code: int
    out: str
    err: str

    @property
    def json(self) -> dict[str, Any]:
        return json.loads(self.out)

    @property
    def findings(self) -> list[dict[str, Any]]:
        return self.json["findings"]

    def ids(self) -> set[str]:
        return {f["id"] for f in self.findings}

    def get(self, fid: str) -> list[dict[str, Any]]:
        return [f for f in self.findings if f["id"] == fid]

    def severities(self, fid: str) -> set[str]:
        return {f["severity"] for f in self.get(fid)}

    @property
    def plan(self) -> dict[str, Any] | None:
        return self.json["plan"]

    def actions(self) -> list[str]:
        return [s["action"] for s in (self.plan or {"steps": []})["steps"]]

    def steps(self, action: str) -> list[dict[str, Any]]:
        return [s for s in (self.plan or {"steps": []})["steps"] if s["action"] == action]


def _write(snap: dict[str, Any] | str, tmp: Path) -> Path:
    path = tmp / f"snap-{os.getpid()}-{id(snap)}-{datetime.now().timestamp()}.json"
    path.write_text(snap if isinstance(snap, str) else json.dumps(snap))
    return path


_TMP = Path(tempfile.mkdtemp(prefix="contract-findings-"))
atexit.register(shutil.rmtree, _TMP, True)


def diagnose(
    snap: dict[str, Any] | str,
    public_name: str | None = PUBLIC,
    *extra: str,
    json_out: bool = True,
) -> Result:
    """`sstp-bot diagnose --snapshot FILE --json [--public-name NAME]` in process."""
    from bot.cli import main

    path = _write(snap, _TMP)
    argv = ["diagnose", "--snapshot", str(path)]
    if json_out:
        argv.append("--json")
    if public_name is not None:
        argv += ["--public-name", public_name]
    argv += list(extra)
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    return Result(int(code), out.getvalue(), err.getvalue())


def diagnose_subprocess(
    snap: dict[str, Any] | str, *args: str, pre: tuple[str, ...] = (), env: dict[str, str] | None = None
) -> Result:
    """`python -m bot [pre...] diagnose --snapshot FILE [args...]` in a subprocess (cwd: a temp dir)."""
    path = _write(snap, _TMP)
    full_env = dict(os.environ, PYTHONPATH=str(REPO))
    full_env.pop("SSTP_BOT_CONFIG", None)
    full_env.update(env or {})
    proc = subprocess.run(
        [PYTHON, "-m", "bot", *pre, "diagnose", "--snapshot", str(path), *args],
        cwd=str(_TMP),
        env=full_env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    return Result(proc.returncode, proc.stdout, proc.stderr)
