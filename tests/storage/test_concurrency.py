"""Exactly once, whatever the threads, processes or crashes."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
from collections import Counter
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import IntegrityError

from commands.errors import PlanStateError
from storage import PlanState, Repository

from .conftest import FakeClock, add_plan, drive

ROOT = Path(__file__).resolve().parents[2]


def test_twenty_threads_approving_one_plan(repo: Repository, clock: FakeClock) -> None:
    plan_id = add_plan(repo, clock)
    barrier = threading.Barrier(20)
    results: list[str] = []
    lock = threading.Lock()

    def approve(n: int) -> None:
        barrier.wait()
        try:
            repo.transition(plan_id, PlanState.PROPOSED, PlanState.APPROVED, actor=f"U0APPR{n:02d}")
            outcome = "won"
        except PlanStateError as exc:
            assert exc.state == "APPROVED"
            outcome = "lost"
        with lock:
            results.append(outcome)

    threads = [threading.Thread(target=approve, args=(n,)) for n in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert Counter(results) == {"won": 1, "lost": 19}
    attempts = [e for e in repo.plan_audit(plan_id) if e.action == "approve"]
    assert len(attempts) == 20
    assert Counter(e.outcome for e in attempts) == {"ok": 1, "refused": 19}
    winner = next(e.actor for e in attempts if e.outcome == "ok")
    assert repo.get_plan(plan_id).approver == winner


_PROCESS = textwrap.dedent(
    """
    import sys, time, pathlib
    from commands.errors import PlanStateError
    from storage import PlanState, Repository
    url, plan_id, go, actor = sys.argv[1], int(sys.argv[2]), pathlib.Path(sys.argv[3]), sys.argv[4]
    repo = Repository(url)
    print("ready", flush=True)
    while not go.exists():
        time.sleep(0.005)
    try:
        repo.transition(plan_id, PlanState.PROPOSED, PlanState.APPROVED, actor=actor)
        print("won", flush=True)
    except PlanStateError as exc:
        print("lost", exc.state, flush=True)
    """
)


def _python(*args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-c", *args], stdout=subprocess.PIPE, text=True, env=env)


def test_processes_approving_one_plan(db_url: str, tmp_path: Path) -> None:
    clock = FakeClock()
    with Repository(db_url, clock=clock) as repo:
        plan_id = add_plan(repo, clock, ttl=timedelta(days=3650))
    go = tmp_path / "go"
    procs = [_python(_PROCESS, db_url, str(plan_id), str(go), f"U0PROC{n}") for n in range(4)]
    for proc in procs:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    go.touch()
    outputs = [proc.communicate(timeout=60)[0].strip() for proc in procs]
    assert all(proc.returncode == 0 for proc in procs), outputs
    assert sorted(outputs) == ["lost APPROVED"] * 3 + ["won"]
    with Repository(db_url) as repo:
        attempts = [e for e in repo.plan_audit(plan_id) if e.action == "approve"]
        assert Counter(e.outcome for e in attempts) == {"ok": 1, "refused": 3}


_CRASH = textwrap.dedent(
    """
    import os, signal, sys
    from storage import PlanState, Repository
    repo = Repository(sys.argv[1])
    plan_id = int(sys.argv[2])
    repo.transition(plan_id, PlanState.APPROVED, PlanState.RUNNING, actor="system")
    repo.record_step_result(plan_id, {"action": "remove_iis_binding", "ok": True, "changed": True,
                                      "detail": "removed", "exit_code": 0})
    print(os.getpid(), flush=True)
    os.kill(os.getpid(), signal.SIGKILL)  # the bot dies in the middle of the plan
    """
)


def test_crash_while_running_is_recovered_as_interrupted(db_url: str) -> None:
    clock = FakeClock()
    with Repository(db_url, clock=clock) as repo:
        plan_id = add_plan(repo, clock, ttl=timedelta(days=3650))
        drive(repo, plan_id, PlanState.APPROVED)
    proc = _python(_CRASH, db_url, str(plan_id))
    pid = int(proc.communicate(timeout=60)[0])
    assert proc.returncode == -9

    with Repository(db_url, clock=clock) as repo:
        running = repo.get_plan(plan_id)
        assert running.state == PlanState.RUNNING
        assert running.runner is not None and f" pid={pid} " in f"{running.runner} "
        assert repo.recover_interrupted() == [plan_id]  # the real liveness check: that process is gone
        plan = repo.get_plan(plan_id)
        assert plan.state == PlanState.INTERRUPTED and plan.finished_at == clock()
        assert plan.runner == running.runner
        assert [r["action"] for r in plan.step_results] == ["remove_iis_binding"]
        last = repo.plan_audit(plan_id)[-1]
        assert (last.action, last.actor, last.outcome) == ("interrupt", "system", "ok")
        assert last.details["runner"] == running.runner
        assert f"pid {pid} on " in last.details["why"] and "no longer exists" in last.details["why"]
        # Never re-run: nothing leads out of INTERRUPTED, and a second start-up finds nothing to do.
        assert repo.recover_interrupted() == []
        with pytest.raises(PlanStateError) as caught:
            repo.transition(plan_id, PlanState.APPROVED, PlanState.RUNNING, actor="system")
        assert caught.value.state == "INTERRUPTED"
        assert "never re-run" in str(caught.value)


_RUNNER = textwrap.dedent(
    """
    import sys
    from storage import PlanState, Repository
    repo = Repository(sys.argv[1])
    plan_id = int(sys.argv[2])
    repo.transition(plan_id, PlanState.APPROVED, PlanState.RUNNING, actor="system")
    print("running", flush=True)
    sys.stdin.readline()  # the fix takes its time; the test says when it is done
    repo.record_step_result(plan_id, {"action": "remove_iis_binding", "ok": True, "changed": True,
                                      "detail": "removed"})
    print(repo.transition(plan_id, PlanState.RUNNING, PlanState.SUCCEEDED, actor="system").state, flush=True)
    """
)

_START_UP = textwrap.dedent(
    """
    import sys
    from storage import Repository
    with Repository(sys.argv[1]) as repo:
        print(repo.recover_interrupted(), flush=True)
    """
)


def test_a_start_up_in_another_process_leaves_a_live_fix_alone(db_url: str) -> None:
    """`sstp-bot check` while the bot (or `sstp-bot fix`) runs a plan must not interrupt it."""
    clock = FakeClock()
    with Repository(db_url, clock=clock) as repo:
        plan_id = add_plan(repo, clock, ttl=timedelta(days=3650))
        drive(repo, plan_id, PlanState.APPROVED)
    fixer = subprocess.Popen(
        [sys.executable, "-c", _RUNNER, db_url, str(plan_id)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        text=True, env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        assert fixer.stdout is not None and fixer.stdout.readline().strip() == "running"
        # Another process starts (its build_service recovers interrupted plans): nothing to recover.
        starter = _python(_START_UP, db_url)
        assert starter.communicate(timeout=60)[0].strip() == "[]" and starter.returncode == 0
        # And another repository in this process, with the default liveness check: same answer.
        with Repository(db_url, clock=clock) as repo:
            assert repo.recover_interrupted() == []
            plan = repo.get_plan(plan_id)
            assert plan.state == PlanState.RUNNING and plan.runner is not None
            assert f" pid={fixer.pid} " in f"{plan.runner} "
            assert [e.action for e in repo.plan_audit(plan_id)][-1] == "start"  # no interrupt audited
            # The server stays protected: a second plan cannot start while this one runs.
            second = add_plan(repo, clock, ttl=timedelta(days=3650))
            drive(repo, second, PlanState.APPROVED)
            with pytest.raises(PlanStateError, match=f"plan {plan_id} is already running"):
                repo.transition(second, PlanState.APPROVED, PlanState.RUNNING, actor="system")
        # The real fix finishes normally.
        out, _ = fixer.communicate("done\n", timeout=60)
        assert fixer.returncode == 0 and out.strip() == "SUCCEEDED"
    finally:
        if fixer.poll() is None:
            fixer.kill()
            fixer.wait()
    with Repository(db_url, clock=clock) as repo:
        assert repo.get_plan(plan_id).state == PlanState.SUCCEEDED
        assert repo.recover_interrupted() == []


def test_at_most_one_running_plan_per_server(repo: Repository, clock: FakeClock, db_url: str) -> None:
    first = add_plan(repo, clock)
    drive(repo, first, PlanState.RUNNING)
    second = add_plan(repo, clock)
    drive(repo, second, PlanState.APPROVED)
    other_server = add_plan(repo, clock, "vpn02")
    drive(repo, other_server, PlanState.RUNNING)  # another server may run at the same time

    with pytest.raises(PlanStateError, match=f"plan {first} is already running on vpn01") as caught:
        repo.transition(second, PlanState.APPROVED, PlanState.RUNNING, actor="system")
    assert caught.value.state == "APPROVED"
    assert repo.get_plan(second).state == PlanState.APPROVED
    assert repo.plan_audit(second)[-1].outcome == "refused"

    repo.transition(first, PlanState.RUNNING, PlanState.SUCCEEDED, actor="system")
    assert repo.transition(second, PlanState.APPROVED, PlanState.RUNNING, actor="system").state == "RUNNING"

    # The database itself enforces it, whoever writes.
    engine = create_engine(db_url)
    with pytest.raises(IntegrityError), engine.begin() as conn:
        conn.execute(text("UPDATE plans SET state = 'RUNNING' WHERE id = :id"), {"id": first})
    engine.dispose()


def test_concurrent_starts_of_two_plans_of_one_server(repo: Repository, clock: FakeClock) -> None:
    first, second = add_plan(repo, clock), None
    drive(repo, first, PlanState.APPROVED)
    second = add_plan(repo, clock)
    drive(repo, second, PlanState.APPROVED)
    barrier = threading.Barrier(2)
    outcomes: list[str] = []

    def start(plan_id: int) -> None:
        barrier.wait()
        try:
            repo.transition(plan_id, PlanState.APPROVED, PlanState.RUNNING, actor="system")
            outcomes.append("started")
        except PlanStateError:
            outcomes.append("refused")

    threads = [threading.Thread(target=start, args=(p,)) for p in (first, second)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(outcomes) == ["refused", "started"]
