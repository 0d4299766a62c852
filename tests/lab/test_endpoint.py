"""Protocol details of the lab endpoint that pypsrp relies on (DESIGN 10)."""

from __future__ import annotations

import time

import pytest
import requests
from pypsrp.exceptions import WSManFaultError
from pypsrp.powershell import RunspacePool
from pypsrp.wsman import WSMan

from commands.lab.endpoint import OPERATION_TIMEOUT_CODE
from commands.lab.lab import LAB_PASSWORD, LAB_USERNAME, Lab


@pytest.fixture(scope="module")
def lab():
    with Lab(["healthy"]) as lab:
        yield lab


def _wsman(lab: Lab, **kwargs: object) -> WSMan:
    server = lab.servers["vpn-healthy"]
    options: dict = dict(ssl=False, auth="ntlm", username=LAB_USERNAME, password=LAB_PASSWORD, no_proxy=True)
    options.update(kwargs)
    return WSMan(server.host, port=server.port, **options)


def test_receive_long_polls_then_answers_the_operation_timeout_fault(lab):
    with _wsman(lab) as wsman, RunspacePool(wsman) as pool:
        start = time.monotonic()
        with pytest.raises(WSManFaultError) as err:
            pool._receive(timeout=1)  # nothing queued for the pool
        elapsed = time.monotonic() - start
    assert err.value.code == OPERATION_TIMEOUT_CODE
    assert 0.9 <= elapsed < 3


def test_unencrypted_soap_over_http_is_refused(lab):
    with _wsman(lab, encryption="never") as wsman, pytest.raises(Exception) as err:
        RunspacePool(wsman).open()
    assert "401" in str(err.value) or "authenticate" in str(err.value).lower()


def test_shells_are_deleted_when_the_pool_closes(lab):
    endpoint = lab.servers["vpn-healthy"].endpoint
    with _wsman(lab) as wsman, RunspacePool(wsman):
        assert endpoint.open_shells == 1
    assert endpoint.open_shells == 0


def test_every_response_has_a_content_length(lab):
    server = lab.servers["vpn-healthy"]
    session = requests.Session()
    session.trust_env = False  # loopback only: never through a proxy from the environment
    response = session.post(f"http://{server.host}:{server.port}/wsman", data=b"", timeout=5)
    assert response.status_code == 401
    assert response.headers["Content-Length"] == "0"
    assert "Negotiate" in response.headers["WWW-Authenticate"]
    assert "Basic" not in response.headers["WWW-Authenticate"]  # never offered over plain HTTP


def test_closing_a_pipeline_sends_a_signal(lab):
    from pypsrp.powershell import PowerShell

    from commands.scripts import load_script

    endpoint = lab.servers["vpn-healthy"].endpoint
    with _wsman(lab) as wsman, RunspacePool(wsman) as pool:
        ps = PowerShell(pool)
        ps.add_script(load_script("probe")).add_parameter("EventHours", 24)
        ps.invoke()
        endpoint.clear_log()
        ps.close()
        assert [(r.action, r.status) for r in endpoint.requests] == [("Signal", 200)]
