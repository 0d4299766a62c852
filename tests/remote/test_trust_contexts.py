"""WS-Man over HTTPS loads its trust store once per process, not once per connection.

urllib3 builds a verifying SSL context for each new connection and loads the CA bundle into it; with
the default trust (certifi's ~150 roots) that cost more CPU than the rest of a cold check. The runner
shares one context per trust store (`commands.psrp._TrustContexts`); these tests drive real pypsrp
connections to the lab and watch what urllib3 is handed for each TLS connection.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import ssl
from pathlib import Path
from typing import Any

import certifi
import pytest
import urllib3.connection

from commands import psrp
from commands.errors import RemoteError
from commands.lab.lab import LAB_PASSWORD, Lab, lab_ca_bundle
from commands.psrp import RemoteSession


@pytest.fixture(scope="module")
def tls_lab():
    with Lab(["healthy"], tls=True) as lab:
        yield lab


@pytest.fixture
def wraps(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """What urllib3 passes to `ssl_wrap_socket` for every TLS connection it opens."""
    seen: list[dict[str, Any]] = []
    real = urllib3.connection.ssl_wrap_socket

    def spy(*args: Any, **kwargs: Any) -> Any:
        seen.append(dict(kwargs))
        return real(*args, **kwargs)

    monkeypatch.setattr(urllib3.connection, "ssl_wrap_socket", spy)
    return seen


@pytest.fixture
def fresh_trust(monkeypatch: pytest.MonkeyPatch) -> psrp._TrustContexts:
    trust = psrp._TrustContexts()
    monkeypatch.setattr(psrp, "_TRUST", trust)
    return trust


def _bundle(tmp_path: Path, name: str = "bundle.pem") -> str:
    """A realistic enterprise bundle: the public roots and the lab's own CA."""
    path = tmp_path / name
    path.write_bytes(Path(certifi.where()).read_bytes() + Path(lab_ca_bundle()).read_bytes())
    return str(path)


def test_every_cold_connection_uses_one_context_with_the_bundle_loaded_once(tls_lab, tmp_path, wraps, fresh_trust):
    cfg = dataclasses.replace(tls_lab.server_config("vpn-healthy"), ca_bundle=_bundle(tmp_path))
    for _ in range(3):  # three cold checks: three TCP+TLS connections
        with RemoteSession(cfg, LAB_PASSWORD) as session:
            assert session.probe()["schema"] == "sstp-bot/snapshot/v1"
    assert len(wraps) == 3
    contexts = {id(w["ssl_context"]) for w in wraps}
    assert len(contexts) == 1  # the same context every time
    assert all(w["ca_certs"] is None and w["ca_cert_dir"] is None for w in wraps)  # nothing loaded again
    context = wraps[0]["ssl_context"]
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    assert context.hostname_checks_common_name is False  # as urllib3's own context: no CN fallback
    assert context.cert_store_stats()["x509_ca"] > 100  # the whole bundle is in it


def test_a_bundle_without_the_servers_ca_still_fails_as_tls(tls_lab, tmp_path, fresh_trust):
    public_only = tmp_path / "public.pem"
    shutil.copy(certifi.where(), public_only)
    cfg = dataclasses.replace(tls_lab.server_config("vpn-healthy"), ca_bundle=str(public_only))
    for _ in range(2):  # also with the context already made
        with pytest.raises(RemoteError) as err:
            RemoteSession(cfg, LAB_PASSWORD).open()
        assert err.value.kind == "tls"


def test_the_default_trust_is_shared_and_still_refuses_the_lab(tls_lab, wraps, fresh_trust):
    cfg = dataclasses.replace(tls_lab.server_config("vpn-healthy"), ca_bundle=None)
    for _ in range(2):
        with pytest.raises(RemoteError) as err:
            RemoteSession(cfg, LAB_PASSWORD).open()
        assert err.value.kind == "tls"
    assert len({id(w["ssl_context"]) for w in wraps}) == 1 and wraps[0]["ca_certs"] is None


def test_a_renewed_bundle_file_is_loaded_afresh(tls_lab, tmp_path, wraps, fresh_trust):
    public_only = tmp_path / "bundle.pem"
    shutil.copy(certifi.where(), public_only)
    cfg = dataclasses.replace(tls_lab.server_config("vpn-healthy"), ca_bundle=str(public_only))
    with pytest.raises(RemoteError):
        RemoteSession(cfg, LAB_PASSWORD).open()
    # The administrator adds the server's CA to the bundle: the next check trusts it, no restart.
    public_only.write_bytes(public_only.read_bytes() + Path(lab_ca_bundle()).read_bytes())
    stat = public_only.stat()
    os.utime(public_only, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    with RemoteSession(cfg, LAB_PASSWORD) as session:
        assert session.probe()["schema"] == "sstp-bot/snapshot/v1"
    assert len({id(w["ssl_context"]) for w in wraps}) == 2
    assert len(fresh_trust._contexts) == 1  # the stale context of that file is dropped


def test_verification_off_keeps_urllib3s_own_unverified_context(tls_lab, wraps, fresh_trust):
    cfg = dataclasses.replace(tls_lab.server_config("vpn-healthy"), verify_tls=False, ca_bundle=None)
    with RemoteSession(cfg, LAB_PASSWORD) as session:
        session.probe()
    assert fresh_trust._contexts == {}
    assert wraps[0]["ssl_context"].verify_mode == ssl.CERT_NONE


def test_an_unreadable_bundle_is_a_tls_error_every_time_and_never_kept(tls_lab, tmp_path, fresh_trust):
    broken = tmp_path / "broken.pem"
    broken.write_text("-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n")
    cfg = dataclasses.replace(tls_lab.server_config("vpn-healthy"), ca_bundle=str(broken))
    for _ in range(2):
        with pytest.raises(RemoteError) as err:
            RemoteSession(cfg, LAB_PASSWORD).open()
        assert err.value.kind == "tls"
    assert fresh_trust._contexts == {}
