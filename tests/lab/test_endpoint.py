"""Protocol details of the lab endpoint that pypsrp relies on (DESIGN 10)."""

from __future__ import annotations

import time

import pytest
import requests
from pypsrp.exceptions import WSManFaultError
from pypsrp.powershell import PowerShell, PSInvocationState, RunspacePool
from pypsrp.wsman import WSMan

from commands.lab.endpoint import INVALID_SELECTORS_CODE, OPERATION_TIMEOUT_CODE
from commands.lab.lab import LAB_PASSWORD, LAB_USERNAME, Lab
from commands.scripts import load_script


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
        ps.add_script(load_script("probe"), use_local_scope=True).add_parameter("EventHours", 24)
        ps.invoke()
        endpoint.clear_log()
        ps.close()
        assert [(r.action, r.status) for r in endpoint.requests] == [("Signal", 200)]


# --- as strict as Windows (DESIGN 10 [2], DOMAIN 14) ------------------------------------------------


def test_a_receive_for_an_unknown_command_id_is_faulted_at_once(lab):
    import uuid

    with _wsman(lab) as wsman, RunspacePool(wsman) as pool:
        start = time.monotonic()
        with pytest.raises(WSManFaultError) as err:
            pool.shell.receive("stdout", command_id=str(uuid.uuid4()).upper(), timeout=5)
        elapsed = time.monotonic() - start
    assert err.value.code == INVALID_SELECTORS_CODE
    assert elapsed < 1  # not after the 5 s long-poll


@pytest.fixture(scope="module")
def large_lab():
    with Lab(["large-probe"]) as lab:
        yield lab


def test_large_output_is_split_by_max_envelope_size_and_command_state_comes_only_with_done(large_lab):
    """A 2.1 MB probe: each Receive carries at most what fits in the client's MaxEnvelopeSize; the
    CommandState element appears once, in the last Receive, as Done with an ExitCode (DOMAIN 14)."""
    from pypsrp.powershell import PowerShell
    from pypsrp.shell import CommandState

    from commands.scripts import load_script

    server = large_lab.servers["vpn-large"]
    wsman = WSMan(server.host, port=server.port, ssl=False, auth="ntlm", username=LAB_USERNAME,
                  password=LAB_PASSWORD, no_proxy=True)
    with wsman, RunspacePool(wsman) as pool:
        ps = PowerShell(pool)
        ps.add_script(load_script("probe"), use_local_scope=True)
        ps.begin_invoke()
        states, sizes = [], []
        while not states or states[-1][0] != CommandState.DONE:
            state, rc, streams = pool.shell.receive("stdout", command_id=ps._command_id, timeout=5)
            states.append((state, rc))
            sizes.append(len(streams["stdout"]))
            assert len(states) < 100
    assert len(states) >= 4
    assert all(s == (CommandState.PENDING, None) for s in states[:-1])  # no CommandState element
    assert states[-1] == (CommandState.DONE, 0)
    # Raw PSRP bytes per Receive, base64 in the envelope: within pypsrp's 153,600-byte default.
    assert max(sizes) * 4 / 3 < wsman.max_envelope_size
    assert sum(sizes) > 2_000_000


def test_the_client_reassembles_the_large_probe(large_lab):
    from commands.psrp import RemoteSession

    with RemoteSession(large_lab.server_config("vpn-large"), LAB_PASSWORD) as session:
        snapshot = session.probe()
    filler = next(c for c in snapshot["certificates"] if c["friendly_name"])
    assert len(filler["friendly_name"]) == 2_100_000


def test_a_crashing_runtime_fails_the_pipeline_and_keeps_the_endpoint_up(lab, monkeypatch):
    endpoint = lab.servers["vpn-healthy"].endpoint

    def crash(script: object, params: object, *, local_scope: bool) -> object:
        raise RuntimeError("boom")

    monkeypatch.setattr(endpoint, "executor", crash)
    with _wsman(lab) as wsman, RunspacePool(wsman) as pool:
        ps = PowerShell(pool)
        ps.add_script("Get-Date")
        ps.invoke()
        assert ps.had_errors
        assert "lab runtime error: boom" in str(ps.streams.error[0])
        monkeypatch.undo()
        again = PowerShell(pool)
        again.add_script(load_script("remoteaccess_state"), use_local_scope=True)
        again.invoke()  # the same pool still answers once the runtime is back
        assert again.state == PSInvocationState.COMPLETED and not again.had_errors and again.output


def test_cached_server_messages_are_byte_for_byte_psrpcores():
    """The lab serializes the state and capability messages every check repeats once; what it queues
    must be exactly what psrpcore would queue, on the first (computed) and later (cached) sends."""
    import uuid

    import psrpcore
    from psrpcore.types import (
        ApplicationPrivateData,
        ErrorCategoryInfo,
        ErrorRecord,
        NETException,
        PipelineState,
        PSRPMessageType,
        RunspacePoolStateMsg,
    )

    from commands.lab.endpoint import _LabRunspacePool

    error = ErrorRecord(Exception=NETException(Message="boom"), CategoryInfo=ErrorCategoryInfo(Reason="X"))

    def messages(pool: psrpcore.ServerRunspacePool) -> list:
        return [
            pool.our_capability,
            ApplicationPrivateData(ApplicationPrivateData=pool.application_private_data),
            RunspacePoolStateMsg(RunspaceState=2),
            PipelineState(PipelineState=1),
            PipelineState(PipelineState=4),
            PipelineState(PipelineState=3, ExceptionAsErrorRecord=error),  # with an error: not cached
            "plain output",
        ]

    pipeline_id = uuid.uuid4()
    ours, theirs = _LabRunspacePool(), psrpcore.ServerRunspacePool()
    for _ in range(2):
        for mine, reference in zip(messages(ours), messages(theirs), strict=True):
            kind = PSRPMessageType.PipelineOutput if isinstance(mine, str) else None
            ours.prepare_message(mine, kind, pipeline_id=pipeline_id)
            theirs.prepare_message(reference, kind, pipeline_id=pipeline_id)
    queued = [(m.message_type, bytes(m.data), m.pipeline_id, m.object_id) for m in ours._send_buffer]
    expected = [(m.message_type, bytes(m.data), m.pipeline_id, m.object_id) for m in theirs._send_buffer]
    assert len(queued) == 14 and queued == expected
