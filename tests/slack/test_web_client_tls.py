"""The bot's Slack Web API client verifies TLS with one context per process (not one per call)."""

from __future__ import annotations

import ssl
from collections.abc import Iterator

import pytest
from slack_sdk.errors import SlackRequestError

from bot.slack.app import make_web_client, slack_tls_context
from commands.lab.https_stub import https_json_api


def test_every_client_shares_one_verifying_context() -> None:
    a, b = make_web_client("xoxb-a"), make_web_client("xoxb-b", "http://127.0.0.1:9/api/")
    assert a.ssl is b.ssl is slack_tls_context()
    assert a.ssl.verify_mode == ssl.CERT_REQUIRED and a.ssl.check_hostname


@pytest.fixture
def https_api() -> Iterator[str]:
    """An HTTPS server on 127.0.0.1 whose certificate no public trust store knows (the lab's CA)."""
    with https_json_api() as url:
        yield url


def test_the_shared_context_still_refuses_an_untrusted_certificate(https_api: str) -> None:
    client = make_web_client("xoxb-test", https_api, timeout=5)
    client.retry_handlers = []  # one attempt: the refusal is the answer
    for _ in range(2):  # and again with the context already in use
        with pytest.raises((SlackRequestError, ssl.SSLError, OSError)) as err:
            client.auth_test()
        assert "CERTIFICATE_VERIFY_FAILED" in repr(err.value) or "certificate verify failed" in str(err.value)
