"""`sstp-bot demo`: the whole story against the loopback lab, non-interactively.

Starts emulated RRAS servers on 127.0.0.1 (real WinRM/PSRP with NTLM and message encryption), checks
the fleet, shows the plan for the server with the classic IIS binding error, approves and runs it,
re-checks (in the same runspace pool as the fix), and prints the history. Then it fixes a server
reached only through the least-privilege JEA endpoint (DESIGN 12), where the bot calls functions by
name and sends no script text. Exits 0 only if both fixes made their server healthy. Nothing is
written outside a temporary directory.
"""

from __future__ import annotations

import argparse
import contextlib
import tempfile
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from bot.cli import Environment, ExitStatus
from bot.config import load_config
from bot.service import Actor, Service, build_service
from bot.terminal import render_check
from commands.lab.lab import Lab

DEMO_SCENARIO = "fleet"
BROKEN_SCENARIO = "iis-binding"
JEA_SERVER = "vpn-jea"  # the same error, on a server behind the JEA endpoint SstpBot


def run(args: argparse.Namespace, env: Environment) -> int:
    with contextlib.ExitStack() as cleanup:
        return _run(args, env, cleanup)


def _run(args: argparse.Namespace, env: Environment, cleanup: contextlib.ExitStack) -> int:
    console = Console(file=env.stdout, width=110, soft_wrap=True)
    actor = Actor(id="cli:demo", source="cli")
    # Closed last in, first out: the database, then the lab, then the folder that holds the database.
    tmp = cleanup.enter_context(tempfile.TemporaryDirectory(prefix="sstp-bot-demo-"))
    lab = cleanup.enter_context(
        Lab([DEMO_SCENARIO], extra_servers=[(JEA_SERVER, BROKEN_SCENARIO)], jea=[JEA_SERVER])
    )
    config_path = lab.write_config(Path(tmp) / "lab.toml", database_url=f"sqlite:///{tmp}/demo.db")
    config = load_config(config_path, env.environ)
    service = build_service(config, env.environ, env.clock)
    cleanup.callback(service.close)
    console.rule("1. The lab")
    console.print(
        f"{len(lab.servers)} emulated RRAS servers on 127.0.0.1, reached over WinRM "
        "(HTTP with NTLM and message encryption) by the real pypsrp client."
    )

    console.rule("2. Fleet check")
    outcomes = service.check(list(config.servers.values()), actor)
    table = Table("server", "status", "findings", box=None)
    for outcome in outcomes:
        result = outcome.result
        ids = ", ".join(dict.fromkeys(f.id for f in result.findings if f.severity != "info")) or "-"
        if result.error_kind:
            ids = f"{result.error_kind}: {result.error_message}"
        colour = {"healthy": "green", "unhealthy": "red", "error": "yellow"}[result.status]
        table.add_row(result.server, f"[{colour}]{result.status}[/]", ids)
    console.print(table)

    broken = next(
        name for name, server in lab.servers.items() if server.spec.scenario == BROKEN_SCENARIO and server.jea is None
    )
    target = next(o for o in outcomes if o.result.server == broken)
    console.rule(f"3. {broken}: the report and the plan")
    render_check(target.result, console)
    if target.plan_id is None:
        console.print(f"[red]No plan was proposed for {broken}.[/]")
        return ExitStatus.ERROR

    console.rule(f"4. Approve and run plan {target.plan_id}")
    service.approve(target.plan_id, actor, authorised=True)
    fix = service.execute(
        target.plan_id,
        actor,
        progress=lambda i, k, step: console.print(f"  [{i}/{k}] {step.get('description')}", markup=False),
    )
    for step in fix.steps:
        console.print(f"  {'ok' if step.ok else 'FAILED'} {step.action}: {step.detail}", markup=False)
    console.print(f"Plan {fix.plan.id}: {fix.state}" + (f" ({fix.error})" if fix.error else ""), markup=False)

    console.rule(f"5. Re-check of {broken} (in the same session, after the last step)")
    if fix.after is None:
        console.print(f"[red]The fix could not run: {escape(str(fix.error))}[/]")
        return ExitStatus.ERROR
    render_check(fix.after, console)

    console.rule(f"6. History of {broken}")
    for entry in service.history(broken, limit=10):
        if entry.check is not None:
            what = f"check  {entry.check.status:<9} by {entry.check.actor}"
        elif entry.plan is not None:
            what = f"plan {entry.plan.id} {entry.plan.state:<10} requested by {entry.plan.requester}"
        else:
            continue
        console.print(f"  {entry.at:%Y-%m-%d %H:%M:%S}  {what}")

    healthy = fix.after.status == "healthy"
    jea_healthy = _least_privilege(lab, service, actor, console)
    console.rule("Result")
    console.print(
        f"[green]{broken} is healthy again.[/]" if healthy else f"[red]{broken} is still not healthy.[/]"
    )
    return ExitStatus.OK if healthy and jea_healthy else ExitStatus.FINDINGS


def _least_privilege(lab: Lab, service: Service, actor: Actor, console: Console) -> bool:
    """The same fix on a server reached through the JEA endpoint: functions by name, no script text."""
    server = lab.servers[JEA_SERVER]
    assert server.jea is not None
    console.rule(f"7. {JEA_SERVER}: least privilege through the JEA endpoint {server.jea.configuration_name}")
    console.print(
        f"{JEA_SERVER} accepts the bot only on the session configuration {server.jea.configuration_name} "
        "(configuration_name in the inventory): a NoLanguage session where the bot's account, not an "
        "administrator, may run the SstpBot module's functions and nothing else (`sstp-bot endpoint export`).",
        markup=False,
    )
    server.jea.clear_log()
    [outcome] = service.check([service.config.server(JEA_SERVER)], actor)
    if outcome.plan_id is None:
        console.print(f"[red]No plan was proposed for {JEA_SERVER}.[/]")
        return False
    service.approve(outcome.plan_id, actor, authorised=True)
    fix = service.execute(outcome.plan_id, actor)
    calls = list(dict.fromkeys(i.command for i in server.jea.invocations))
    console.print(f"Functions called: {', '.join(calls)}", markup=False)
    console.print(f"Script text received by {JEA_SERVER}: {server.jea.scripts_received}", markup=False)
    after = fix.after.status if fix.after is not None else f"not re-checked ({fix.error})"
    console.print(f"Plan {fix.plan.id}: {fix.state}; {JEA_SERVER} is {after}.", markup=False)
    return fix.after is not None and fix.after.status == "healthy" and server.jea.scripts_received == 0
