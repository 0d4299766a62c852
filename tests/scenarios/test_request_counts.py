"""WS-Man request counts of a check and a fix, from the lab's request log (DESIGN 2, 9, 10).

DESIGN 10: one RunspacePool + one pipeline = Create, Receive (pool opened), Command, Receive (output),
Delete: 5 WS-Man requests; NTLM over HTTP adds 3 (401, 401, empty POST) on a new connection; each
further script in a warm pool adds Command + Receive. DESIGN 9: a fix reuses one pool for its probe,
its steps and its re-probe.
"""

from __future__ import annotations

from collections import Counter

from bot.service import Actor

from .conftest import LabSetup

OPERATOR = Actor(id="cli:operator", source="cli")


def wsman(actions: Counter[str]) -> int:
    return sum(n for action, n in actions.items() if action != "auth")


def test_a_cli_check_is_one_create_one_command_one_delete(fleet: LabSetup):
    fleet.clear_logs()
    assert fleet.cli("check", "vpn02", "--json").code == 1
    server = fleet.server("vpn02")
    actions = fleet.actions("vpn02")
    assert actions == Counter({"Create": 1, "Receive": 2, "Command": 1, "Delete": 1, "auth": 3})
    assert wsman(actions) == 5
    assert len({r.connection for r in server.requests}) == 1  # keep-alive: one TCP connection
    assert {r.shell_id for r in server.requests if r.action != "auth"} != {None}
    assert server.endpoint.open_shells == 0  # the pool was closed (Delete), nothing left behind


def test_each_cli_check_opens_a_new_connection(fleet: LabSetup):
    fleet.clear_logs()
    for _ in range(2):
        assert fleet.cli("check", "vpn01", "--json").code == 0
    requests = fleet.server("vpn01").requests
    # A new connection per command: the NTLM handshake (3 requests) is paid again each time.
    assert Counter(r.action for r in requests)["auth"] == 6
    assert len({r.connection for r in requests}) == 2
    assert len(requests) == 2 * 8


def test_a_fleet_check_is_one_round_trip_per_server(fleet: LabSetup):
    fleet.clear_logs()
    fleet.cli("check", "--all", "--json")
    for name in fleet.lab.servers:
        actions = fleet.actions(name)
        assert (actions["Create"], actions["Command"], actions["Delete"]) == (1, 1, 1), (name, actions)
        assert wsman(actions) == 5 and actions["auth"] == 3


def test_an_execute_is_one_pool_for_probe_steps_and_reprobe(lab_factory):
    setup: LabSetup = lab_factory(["iis-binding"])
    service = setup.service()
    [outcome] = service.check([service.config.server("vpn-iis")], OPERATOR)
    assert outcome.plan_id is not None and outcome.result.plan is not None
    steps = len(outcome.result.plan.steps)
    assert steps == 5
    service.approve(outcome.plan_id, OPERATOR, authorised=True)
    setup.clear_logs()
    received = setup.server("vpn-iis").endpoint.executor.received
    before = len(received)

    fix = service.execute(outcome.plan_id, OPERATOR)
    assert fix.state == "SUCCEEDED"
    actions = setup.actions("vpn-iis")
    # probe, steps, re-probe; the bind step is a sequence of primitives and polls (DESIGN 9 [2]).
    scripts = len(received) - before
    assert scripts > 1 + steps + 1
    assert actions["Create"] == 1 and actions["Delete"] == 1
    assert actions["Command"] == scripts
    # New connection: 5 requests for the first script, then 2 per script on the warm pool.
    assert wsman(actions) == 5 + 2 * (scripts - 1)
    assert actions["auth"] == 3
    assert len({r.connection for r in setup.server("vpn-iis").requests}) == 1
    assert len({r.shell_id for r in setup.server("vpn-iis").requests if r.shell_id}) == 1


def test_a_cli_fix_is_one_pool_for_the_check_and_one_for_the_execute(lab_factory):
    setup: LabSetup = lab_factory(["remoteaccess-stopped"])
    setup.clear_logs()
    received = setup.server("vpn-stopped").endpoint.executor.received
    before = len(received)
    run = setup.cli("fix", "vpn-stopped", "--yes", "--json")
    assert run.code == 0
    steps = len(run.json()["steps"])
    actions = setup.actions("vpn-stopped")
    assert actions["Create"] == 2 and actions["Delete"] == 2  # the check, then the execute
    # The restart step is control_remoteaccess + remoteaccess_state polls (DESIGN 9 [2]).
    assert actions["Command"] == len(received) - before > 1 + (1 + steps + 1)
    assert len({r.shell_id for r in setup.server("vpn-stopped").requests if r.shell_id}) == 2


def test_an_unknown_server_costs_no_request(fleet: LabSetup):
    fleet.clear_logs()
    assert fleet.cli("check", "vpn01", "vpn99", "--json").code == 2
    assert fleet.cli("fix", "vpn99", "--yes").code == 2
    assert fleet.total_requests() == 0
