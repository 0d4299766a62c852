"""User flow: `/sstp check` (one server, several, a group, all), and the read-only commands."""

from __future__ import annotations

from bot.slack.blocks import APPROVE_ACTION
from tests.fakes.blockkit import all_text, assert_slack_limits, buttons
from tests.fakes.slack_api import FakeSlackApi
from tests.slack.conftest import CHANNEL, OPERATOR, OUTSIDER, Harness, build_harness, make_config
from tests.slack.fake_service import FakeService, hash_mismatch, unreachable


def test_check_one_server_posts_then_updates_with_report(harness: Harness, service: FakeService, slack_api: FakeSlackApi) -> None:
    service.results["vpn01"] = hash_mismatch()
    response = harness.command("check vpn01")
    assert response.status == 200
    post = slack_api.calls_to("chat.postMessage")[0]
    assert post.body["channel"] == CHANNEL and "Checking *vpn01*" in post.body["text"]
    update = slack_api.wait_for("chat.update")[0]
    assert update.body["ts"] == slack_api.calls_to("chat.postMessage")[0].body.get("ts", update.body["ts"])
    assert_slack_limits(update.body)
    approve = buttons(update.body)[0]
    assert approve["action_id"] == APPROVE_ACTION and approve["value"] == "1"
    plan = service.plans[1]
    assert (plan.channel, plan.message_ts) == (CHANNEL, update.body["ts"])
    assert plan.requester == OPERATOR
    actor = next(a for n, a in service.calls if n == "check")[1]
    assert actor.id == OPERATOR and actor.source == "slack"


def test_fix_is_an_alias_of_check(harness: Harness, service: FakeService, slack_api: FakeSlackApi) -> None:
    service.results["vpn01"] = hash_mismatch()
    harness.command("fix vpn01")
    assert buttons(slack_api.wait_for("chat.update")[0].body)


def test_unreachable_server_report(harness: Harness, service: FakeService, slack_api: FakeSlackApi) -> None:
    service.results["vpn03"] = unreachable("vpn03")
    harness.command("check vpn03")
    text = all_text(slack_api.wait_for("chat.update")[0].body)
    assert "Server unreachable" in text and "refused the connection" in text


def test_usage_error_is_answered_in_the_ack_and_nothing_runs(harness: Harness, service: FakeService, slack_api: FakeSlackApi) -> None:
    response = harness.command("check <@U0123ABCD>")
    assert response.status == 200 and "Mentions" in response.body
    assert service.calls == [] and slack_api.calls_to("chat.postMessage") == []


def test_unknown_server_is_refused_without_checking(harness: Harness, service: FakeService, slack_api: FakeSlackApi) -> None:
    harness.command("check vpn99")
    reply = slack_api.wait_for("response_url")[0]
    assert "Unknown server 'vpn99'" in all_text(reply.body) and reply.body["response_type"] == "ephemeral"
    assert service.count("check") == 0 and slack_api.calls_to("chat.postMessage") == []


def test_bot_not_in_channel_tells_the_user_and_does_not_probe(harness: Harness, service: FakeService, slack_api: FakeSlackApi) -> None:
    slack_api.channels_without_bot.add(CHANNEL)
    harness.command("check vpn01")
    assert "/invite" in all_text(slack_api.wait_for("response_url")[0].body)
    assert service.count("check") == 0


def test_fleet_check_summary_and_details_in_thread(harness: Harness, service: FakeService, slack_api: FakeSlackApi) -> None:
    service.results["vpn01"] = hash_mismatch()
    service.results["vpn03"] = unreachable("vpn03")
    harness.command("check all")
    posts = slack_api.calls_to("chat.postMessage")
    summary_ts = slack_api.calls_to("chat.update")[0].body["ts"]
    details = [p for p in posts if p.body.get("thread_ts") == summary_ts]
    assert len(details) == 3
    final = slack_api.calls_to("chat.update")[-1]
    assert final.body["ts"] == summary_ts
    text = all_text(final.body)
    assert "3 checked: 1 healthy, 1 with findings, 1 could not be checked" in text
    plan = service.plans[1]
    assert plan.channel == CHANNEL and plan.message_ts not in (None, summary_ts)
    for call in posts + slack_api.calls_to("chat.update"):
        assert_slack_limits(call.body)


def test_fleet_updates_are_throttled_but_final_is_sent(service: FakeService, config, slack_api: FakeSlackApi) -> None:  # type: ignore[no-untyped-def]
    h = build_harness(service, config, slack_api, fleet_update_interval=60.0)
    try:
        h.command("check group:emea")
        updates = slack_api.calls_to("chat.update")
        assert len(updates) == 2  # the first result, then the final one
        assert "2 checked" in all_text(updates[-1].body)
    finally:
        h.close()


def test_unknown_group(harness: Harness, service: FakeService, slack_api: FakeSlackApi) -> None:
    harness.command("check group:mars")
    assert "Unknown group" in all_text(slack_api.wait_for("response_url")[0].body)
    assert service.count("check") == 0


def test_read_only_commands_answer_the_caller_only(harness: Harness, service: FakeService, slack_api: FakeSlackApi) -> None:
    service.results["vpn01"] = hash_mismatch()
    harness.command("check vpn01")
    for text, expected in (("status", "Latest result"), ("servers", "Inventory"), ("history vpn01 5", "plan #1"), ("help", "/sstp check")):
        slack_api.reset()
        harness.command(text)
        reply = slack_api.wait_for("response_url")[0]
        assert expected in all_text(reply.body), text
        assert reply.body["response_type"] == "ephemeral"
        assert slack_api.calls_to("chat.postMessage") == []


def test_status_also_names_the_servers_never_checked(harness: Harness, service: FakeService, slack_api: FakeSlackApi) -> None:
    service.results["vpn01"] = hash_mismatch()
    harness.command("check vpn01")
    slack_api.reset()
    harness.command("status")
    text = all_text(slack_api.wait_for("response_url")[0].body)
    never = [name for name in service.config.servers if name != "vpn01"]
    assert never and all(f"*{name}* never checked" in text for name in never)
    assert "*vpn01* never checked" not in text and "*vpn01*" in text


def test_not_an_operator_is_refused_and_audited(slack_api: FakeSlackApi) -> None:
    config = make_config(operators=(OPERATOR,))
    service = FakeService(config)
    h = build_harness(service, config, slack_api)
    try:
        h.command("check vpn01", user=OUTSIDER)
        assert "not an operator" in all_text(slack_api.wait_for("response_url")[0].body)
        assert service.count("check") == 0
        assert [(a.actor, a.action, a.outcome) for a in service.audits] == [(OUTSIDER, "check", "refused: not an operator")]
        slack_api.reset()
        h.command("help", user=OUTSIDER)
        text = all_text(slack_api.wait_for("response_url")[0].body)
        assert "not allowed to run checks" in text and "/sstp check SERVER" not in text
    finally:
        h.close()


def test_channel_not_allowed(slack_api: FakeSlackApi) -> None:
    config = make_config(allowed_channels=("C0OTHER01",))
    service = FakeService(config)
    h = build_harness(service, config, slack_api)
    try:
        h.command("check vpn01")
        assert "not enabled in this channel" in all_text(slack_api.wait_for("response_url")[0].body)
        assert service.count("check") == 0
        assert (service.audits[0].action, service.audits[0].outcome) == ("check", "refused: channel not allowed")
    finally:
        h.close()


def test_without_response_url_answers_with_post_ephemeral(harness: Harness, slack_api: FakeSlackApi) -> None:
    from slack_bolt.request import BoltRequest

    from tests.fakes import payloads

    form = payloads.slash_command("servers", response_url="")
    harness.app.dispatch(BoltRequest(body=payloads.form_body(form), headers={"content-type": ["application/x-www-form-urlencoded"]}))
    harness.drain()
    (eph,) = slack_api.wait_for("chat.postEphemeral")
    assert eph.body["user"] == OPERATOR and "Inventory" in all_text(eph.body)


def test_held_back_summary_edit_is_sent_after_the_interval(service: FakeService, config, slack_api: FakeSlackApi) -> None:  # type: ignore[no-untyped-def]
    import threading

    from bot.slack.app import _ThrottledSummary

    sent: list[float] = []
    clock = [0.0]
    summary = _ThrottledSummary(lambda: sent.append(clock[0]), 0.2, lambda: clock[0])
    summary.changed()  # sent at once
    clock[0] = 0.05
    summary.changed()  # held back: a timer sends it
    summary.changed()  # still one timer
    clock[0] = 0.3
    done = threading.Event()
    threading.Timer(0.4, done.set).start()
    done.wait()
    assert len(sent) == 2
    summary.flush()
    summary.changed()  # nothing after the final edit
    assert len(sent) == 3


def test_a_check_that_cannot_run_replaces_the_checking_message(harness: Harness, service: FakeService, slack_api: FakeSlackApi) -> None:
    from commands.errors import ConfigError

    def broken(servers, actor, **_options):  # type: ignore[no-untyped-def]
        raise ConfigError("the WinRM password is missing: set SSTP_BOT_WINRM_PASSWORD")

    service.check = broken  # type: ignore[method-assign]
    harness.command("check vpn01")
    update = slack_api.wait_for("chat.update")[0]
    assert "could not run" in all_text(update.body) and "SSTP_BOT_WINRM_PASSWORD" in all_text(update.body)
