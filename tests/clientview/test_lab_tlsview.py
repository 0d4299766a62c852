"""The lab serves each server's SSTP port over TLS as HTTP.sys would (DESIGN 11): every scenario's
client view follows from its configuration, and the port follows the twin as it changes."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from commands.clientview import collect
from commands.lab.lab import Lab, LabServer
from commands.lab.scenarios import load_scenario, scenario_names
from commands.lab.tlsview import PortView, chosen_binding
from commands.lab.twin import IisBinding

SINGLE = [n for n in scenario_names() if not load_scenario(n).is_fleet]


def now() -> datetime:
    return datetime.now(UTC)


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    with Lab(SINGLE) as running:
        yield running


def expected_view(server: LabServer) -> dict[str, Any]:
    """What a client must see, worked out from the twin's configuration with DOMAIN 2.2's rules:
    SNI binding for the name, else 127.0.0.1:PORT, else 0.0.0.0:PORT; a certificate without a
    private key (or missing from the store) cannot be served; 200 only with SSTP's URL registered."""
    s = server.twin.state
    port = s.listener_port
    if s.foreign_listener is not None:
        return {"handshakes": ["tls", "tls"], "sstp": None}
    iis = s.iis_installed and (s.services.get("W3SVC") or None) is not None and s.services["W3SVC"].status == "Running" \
        and any(b.port == port for b in s.iis_bindings)
    ra = s.services.get("RemoteAccess")
    sstp_registered = ra is not None and ra.status == "Running" and s.sstp_listening
    if not (iis or sstp_registered):
        return {"handshakes": ["unreachable", "unreachable"], "sstp": None}
    handshakes: list[str] = []
    for sni in (None, server.public_name):
        binding = None
        if sni:
            binding = next((b for b in s.sni_bindings if b.endpoint.lower() == f"{sni}:{port}".lower()), None)
        binding = binding or next((b for b in s.ip_bindings if b.endpoint == f"127.0.0.1:{port}"), None)
        binding = binding or next((b for b in s.ip_bindings if b.endpoint == f"0.0.0.0:{port}"), None)
        cert = next((c for c in s.certificates if binding and c.thumbprint == binding.cert_hash.upper()), None)
        handshakes.append(cert.thumbprint if cert is not None and cert.has_private_key else "tls")
    if all(h == "tls" for h in handshakes):
        return {"handshakes": handshakes, "sstp": None}
    sstp = (200 if sstp_registered else 404) if handshakes[1] != "tls" else "tls"
    return {"handshakes": handshakes, "sstp": sstp}


def observed(view: dict[str, Any]) -> dict[str, Any]:
    handshakes = [h["cert_sha1"] if h["ok"] else h["error"]["kind"] for h in view["handshakes"]]
    sstp = view["sstp"]
    if sstp is not None:
        sstp = sstp["http_status"] if sstp["http_status"] is not None else sstp["error"]["kind"]
    return {"handshakes": handshakes, "sstp": sstp}


def test_every_scenarios_client_view_is_consistent_with_its_configuration(lab):
    assert len(lab.servers) == len(SINGLE) >= 20
    kinds_seen: set[Any] = set()
    for name, server in lab.servers.items():
        assert server.client_endpoint is not None
        view = collect(server.client_endpoint, server.public_name, 3.0, now)
        assert observed(view) == expected_view(server), name
        kinds_seen.update(observed(view)["handshakes"])
        kinds_seen.add(observed(view)["sstp"])
    # The scenarios between them exercise served certificates, TLS failures, refused ports and 200.
    assert {"tls", "unreachable", 200} <= kinds_seen


def test_the_classic_iis_binding_serves_the_iis_certificate(lab):
    server = next(s for s in lab.servers.values() if s.spec.scenario == "iis-binding")
    s = server.twin.state
    iis_cert = next(c for c in s.certificates if c.thumbprint != s.sha1_hash)
    view = collect(server.client_endpoint or "", server.public_name, 3.0, now)
    assert [h["cert_sha256"] for h in view["handshakes"]] == [iis_cert.sha256, iis_cert.sha256]
    assert iis_cert.sha256 != s.sha256_hash


def test_an_sni_binding_wins_for_sni_clients_only(lab):
    server = next(s for s in lab.servers.values() if s.spec.scenario == "sni-binding")
    s = server.twin.state
    view = collect(server.client_endpoint or "", server.public_name, 3.0, now)
    without_sni, with_sni = view["handshakes"]
    assert without_sni["cert_sha256"] == s.sha256_hash
    assert with_sni["cert_sha1"] == s.sni_bindings[0].cert_hash != s.sha1_hash


def test_the_inventory_points_the_client_view_at_the_lab_listener(lab, tmp_path):
    path = lab.write_config(tmp_path / "lab.toml")
    text = path.read_text()
    for server in lab.servers.values():
        assert f'client_endpoint = "{server.client_endpoint}"' in text
        assert lab.server_config(server.name).client_endpoint == server.client_endpoint


def test_the_port_closes_and_reopens_with_the_twin():
    with Lab(["healthy"]) as lab:
        server = next(iter(lab.servers.values()))
        assert server.tls_view is not None
        endpoint = server.client_endpoint or ""
        assert collect(endpoint, server.public_name, 2.0, now)["sstp"]["http_status"] == 200
        with server.twin.lock:
            server.twin.state.services["RemoteAccess"].status = "Stopped"
        server.tls_view.refresh()  # what the lab does after every script
        view = collect(endpoint, server.public_name, 2.0, now)
        assert [h["error"]["kind"] for h in view["handshakes"]] == ["unreachable", "unreachable"]
        with server.twin.lock:
            server.twin.state.services["RemoteAccess"].status = "Running"
        deadline = time.monotonic() + 2
        while time.monotonic() < deadline:  # without a script, the 50 ms poll reopens the port
            view = collect(endpoint, server.public_name, 2.0, now)
            if view["sstp"] is not None:
                break
            time.sleep(0.02)
        assert view["endpoint"] == endpoint and view["sstp"]["http_status"] == 200


def _wait_for(endpoint: str, name: str, reachable: bool) -> dict:
    """The client view once the port is open (SSTP answers) or closed (connections refused), or the
    last one after 2 s."""
    deadline = time.monotonic() + 2
    while True:
        view = collect(endpoint, name, 2.0, now)
        refused = all((h.get("error") or {}).get("kind") == "unreachable" for h in view["handshakes"])
        if (view["sstp"] is not None if reachable else refused) or time.monotonic() > deadline:
            return view
        time.sleep(0.02)


def test_the_poll_alone_follows_the_twin_in_a_lab_started_after_another_stopped():
    """All TLS views share one poller; it keeps polling for a lab started after the last one stopped,
    and closes the port as well as reopening it without any script running."""
    with Lab(["healthy"]):
        pass
    with Lab(["healthy"]) as lab:
        server = next(iter(lab.servers.values()))
        endpoint, twin = server.client_endpoint or "", server.twin
        assert collect(endpoint, server.public_name, 2.0, now)["sstp"]["http_status"] == 200
        with twin.lock:
            twin.state.services["RemoteAccess"].status = "Stopped"
        view = _wait_for(endpoint, server.public_name, reachable=False)
        assert [h["error"]["kind"] for h in view["handshakes"]] == ["unreachable", "unreachable"]
        with twin.lock:
            twin.state.services["RemoteAccess"].status = "Running"
        assert _wait_for(endpoint, server.public_name, reachable=True)["sstp"]["http_status"] == 200


def test_an_iis_owned_port_answers_404():
    with Lab(["remoteaccess-stopped"]) as lab:
        server = next(iter(lab.servers.values()))
        twin = server.twin
        iis_cert = twin.state.certificates[0]
        with twin.lock:  # IIS takes the port while RemoteAccess is stopped
            twin.state.iis_bindings.append(IisBinding("Default Web Site", "*:443:", iis_cert.thumbprint))
        assert server.tls_view is not None
        server.tls_view.refresh()
        view = collect(server.client_endpoint or "", server.public_name, 2.0, now)
        assert view["sstp"] == {"sni": server.public_name, "ok": False, "http_status": 404, "error": None}
        # The certificate served is still the one of the wildcard binding.
        assert view["handshakes"][0]["cert_sha1"] == twin.state.ip_bindings[0].cert_hash


def test_binding_choice_follows_http_sys_order():
    view = PortView(
        listening=True, http_sys=True, sstp=True, port=443,
        ip_bindings=(("0.0.0.0:443", "WILD"), ("127.0.0.1:443", "IP"), ("[::]:443", "V6")),
        sni_bindings=(("VPN.example.com:443", "SNI"),),
    )
    assert chosen_binding(view, "vpn.EXAMPLE.com") == ("VPN.example.com:443", "SNI")
    assert chosen_binding(view, "other.example.com") == ("127.0.0.1:443", "IP")
    assert chosen_binding(view, None) == ("127.0.0.1:443", "IP")
    assert chosen_binding(view, None, "10.0.0.9") == ("0.0.0.0:443", "WILD")
    no_wildcard = PortView(True, True, True, 443, (("[::]:443", "V6"),), ())
    assert chosen_binding(no_wildcard, None) is None


def test_a_wrapped_session_adds_the_view_to_probes_only():
    from commands.clientview import ClientViewSession
    from commands.lab.lab import LAB_PASSWORD
    from commands.psrp import RemoteSession

    with Lab(["healthy"]) as lab:
        [name] = list(lab.servers)
        cfg = lab.server_config(name)
        with ClientViewSession(RemoteSession(cfg, LAB_PASSWORD), cfg, now) as session:
            raw = session.probe()
            plain = session.run("probe")
            assert session.server is cfg  # the wrapper's own; other attributes are the session's
            assert session.close is not None
    assert raw["client_view"]["endpoint"] == cfg.client_endpoint and raw["client_view"]["sstp"]["ok"] is True
    assert "client_view" not in plain  # scripts run through run() are left as they are


def test_a_closed_port_stays_reserved_for_the_view():
    """While the twin does not listen, the port refuses connections but stays held: no other socket
    (an outgoing connection's ephemeral port, another listener) can take it, so reopening never
    meets "Address already in use"."""
    import errno
    import socket

    with Lab(["healthy"]) as lab:
        server = next(iter(lab.servers.values()))
        view, twin = server.tls_view, server.twin
        assert view is not None
        with twin.lock:
            twin.state.services["RemoteAccess"].status = "Stopped"
        view.refresh()
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", view.port), timeout=2).close()
        intruder = socket.socket()
        with pytest.raises(OSError) as taken:
            intruder.bind(("127.0.0.1", view.port))
        intruder.close()
        assert taken.value.errno == errno.EADDRINUSE
        with twin.lock:
            twin.state.services["RemoteAccess"].status = "Running"
        view.refresh()
        assert collect(server.client_endpoint or "", server.public_name, 2.0, now)["sstp"]["http_status"] == 200
