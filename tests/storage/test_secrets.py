"""No secret ever lands in the database file, whatever the callers hand over by mistake."""

from __future__ import annotations

from pathlib import Path

from storage import PlanState, Repository
from storage.redaction import REDACTED, redact, redact_text

from .conftest import STEPS, TTL, FakeClock, add_check, sample_snapshot

PASSWORD = "Pl4nted-WinRM-Passw0rd!"
BOT_TOKEN = "xoxb-1234567890-0987654321-PlantedBotTokenAbc"
APP_TOKEN = "xapp-1-A0PLANTED-1234567890-abcdef0123456789"
USER_TOKEN = "xoxp-1111-2222-3333-plantedusertoken"


def test_redaction_helper() -> None:
    assert redact_text(f"auth failed for token {BOT_TOKEN}.") == f"auth failed for token {REDACTED}."
    assert redact_text(f"password={PASSWORD} user=x") == f"password={REDACTED} user=x"
    assert redact_text(f"Set-X -Password '{PASSWORD}' -Force") == f"Set-X -Password {REDACTED} -Force"
    assert redact_text("Authorization: Basic dXNlcjpwYXNzd29yZA==") == f"Authorization: {REDACTED}"
    assert redact({"password": PASSWORD, "nested": [{"SLACK_APP_TOKEN": APP_TOKEN}], "ok": True,
                   "message_ts": "1.2", "password_env": ""}) == {
        "password": REDACTED, "nested": [{"SLACK_APP_TOKEN": REDACTED}], "ok": True, "message_ts": "1.2",
        "password_env": ""}


def test_no_secret_in_the_database_file(db_url: str, clock: FakeClock) -> None:
    with Repository(db_url, clock=clock) as repo:
        snapshot = sample_snapshot()
        snapshot["probe_errors"] = [{"section": "iis", "message": f"token {USER_TOKEN} leaked in output"}]
        check_id = add_check(repo, clock, snapshot=snapshot)
        repo.record_check(server="vpn02", actor="U0AAAA1", source="cli", started_at=clock(), finished_at=clock(),
                          status="error", findings=[], error_kind="auth",
                          error_message=f"authentication failed (password={PASSWORD}; bot token {BOT_TOKEN})")
        plan_id = repo.create_plan(check_id=check_id, server="vpn01", steps=STEPS, fingerprint="F" * 64,
                                   requester="U0AAAA1", source="slack", ttl=TTL)
        repo.transition(plan_id, PlanState.PROPOSED, PlanState.APPROVED, actor="U0BBBB2",
                        details={"password": PASSWORD, "app_token": APP_TOKEN})
        repo.transition(plan_id, PlanState.APPROVED, PlanState.RUNNING, actor="system")
        repo.record_step_result(plan_id, {"action": "bind_sstp_certificate", "ok": False, "changed": False,
                                          "detail": f"Set-RemoteAccess failed: -Password {PASSWORD} "
                                                    f"password: {PASSWORD}", "exit_code": 1})
        repo.audit(actor="U0CCCC3", action="approve", outcome="refused", plan_id=plan_id,
                   details={"reason": f"not an approver (token {BOT_TOKEN})", "credential": PASSWORD})
        stored = repo.get_plan(plan_id)
        assert stored.step_results[0]["ok"] is False
    files = [p for p in Path(db_url.removeprefix("sqlite:///")).parent.iterdir() if p.is_file()]
    assert files
    blob = b"".join(p.read_bytes() for p in files)
    assert b"SSTP_HASH_MISMATCH" in blob  # the search does see the data
    for secret in (BOT_TOKEN, APP_TOKEN, USER_TOKEN, PASSWORD, "PlantedBotToken", "plantedusertoken"):
        assert secret.encode() not in blob, secret


def test_quoted_secret_keys_in_json_and_reprs() -> None:
    assert redact_text('{"password": "hunter2", "user": "x"}') == f'{{"password": {REDACTED}, "user": "x"}}'
    assert "hunter2" not in redact_text(str({"password": "hunter2"}))
