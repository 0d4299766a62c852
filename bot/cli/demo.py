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
from rich.text import Text

from bot.cli import Environment, ExitStatus
from bot.config import load_config
from bot.service import Actor, Service, build_service
from bot.terminal import STATUS_STYLES, make_console, render_check, say
from commands.lab.lab import Lab

DEMO_SCENARIO = "fleet"
BROKEN_SCENARIO = "iis-binding"
JEA_SERVER = "vpn-jea"  # the same error, on a server behind the JEA endpoint SstpBot


def run(args: argparse.Namespace, env: Environment) -> int:
    with contextlib.ExitStack() as cleanup:
        return _run(args, env, cleanup)


def _run(args: argparse.Namespace, env: Environment, cleanup: contextlib.ExitStack) -> int:
    console = make_console(env.stdout, env.width)
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
    say(
        console,
        f"{len(lab.servers)} emulated RRAS servers on 127.0.0.1, reached over WinRM "
        "(HTTP with NTLM and message encryption) by the real pypsrp client.",
    )

    console.rule("2. Fleet check")
    outcomes = service.check(list(config.servers.values()), actor)
    for outcome in outcomes:
        result = outcome.result
        ids = ", ".join(dict.fromkeys(f.id for f in result.findings if f.severity != "info")) or "-"
        if result.error_kind:
            ids = f"{result.error_kind}: {result.error_message}"
        line = Text(f"{result.server}  ")
        line.append(result.status, style=STATUS_STYLES[result.status])
        line.append(f"  {ids}")
        say(console, line, hang=4)

    broken = next(
        name for name, server in lab.servers.items() if server.spec.scenario == BROKEN_SCENARIO and server.jea is None
    )
    target = next(o for o in outcomes if o.result.server == broken)
    console.rule(f"3. {broken}: the report and the plan")
    render_check(target.result, console)
    if target.plan_id is None:
        say(console, Text(f"No plan was proposed for {broken}.", style="red"))
        return ExitStatus.ERROR

    console.rule(f"4. Approve and run plan {target.plan_id}")
    service.approve(target.plan_id, actor, authorised=True)
    fix = service.execute(
        target.plan_id,
        actor,
        progress=lambda i, k, step: say(console, f"  [{i}/{k}] {step.get('description')}", hang=8),
    )
    for step in fix.steps:
        say(console, f"  {'ok' if step.ok else 'FAILED'} {step.action}: {step.detail}", hang=6)
    ok = sum(1 for step in fix.steps if step.ok)
    say(console, f"Plan {fix.plan.id}: {fix.state}, {ok} of {len(fix.plan.steps)} steps ok"
        + (f" ({fix.error})" if fix.error else ""), hang=2)

    console.rule(f"5. Re-check of {broken} (in the same session, after the last step)")
    if fix.after is None:
        say(console, Text(f"The fix could not run: {fix.error}", style="red"))
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
        say(console, f"  {entry.at:%Y-%m-%d %H:%M:%S}  {what}", hang=4)

    healthy = fix.after.status == "healthy"
    jea_healthy = _least_privilege(lab, service, actor, console)
    console.rule("Result")
    say(console, Text(f"{broken} is healthy again." if healthy else f"{broken} is still not healthy.",
                      style="green" if healthy else "red"))
    return ExitStatus.OK if healthy and jea_healthy else ExitStatus.FINDINGS


def _least_privilege(lab: Lab, service: Service, actor: Actor, console: Console) -> bool:
    """The same fix on a server reached through the JEA endpoint: functions by name, no script text."""
    server = lab.servers[JEA_SERVER]
    assert server.jea is not None
    console.rule(f"7. {JEA_SERVER}: least privilege through the JEA endpoint {server.jea.configuration_name}")
    say(
        console,
        f"{JEA_SERVER} accepts the bot only on the session configuration {server.jea.configuration_name} "
        "(configuration_name in the inventory): a NoLanguage session where the bot's account, not an "
        "administrator, may run the SstpBot module's functions and nothing else (`sstp-bot endpoint export`).",
    )
    server.jea.clear_log()
    [outcome] = service.check([service.config.server(JEA_SERVER)], actor)
    if outcome.plan_id is None:
        say(console, Text(f"No plan was proposed for {JEA_SERVER}.", style="red"))
        return False
    service.approve(outcome.plan_id, actor, authorised=True)
    fix = service.execute(outcome.plan_id, actor)
    calls = list(dict.fromkeys(i.command for i in server.jea.invocations))
    say(console, f"Functions called: {', '.join(calls)}", hang=2)
    say(console, f"Script text received by {JEA_SERVER}: {server.jea.scripts_received}")
    after = fix.after.status if fix.after is not None else f"not re-checked ({fix.error})"
    say(console, f"Plan {fix.plan.id}: {fix.state}; {JEA_SERVER} is {after}.", hang=2)
    return fix.after is not None and fix.after.status == "healthy" and server.jea.scripts_received == 0
