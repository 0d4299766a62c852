"""Benchmark the cost of TLS trust per outgoing call: a trust store loaded for every connection (what
urllib does for slack_sdk's WebClient when given no context, and urllib3 for pypsrp's WS-Man
connections) against one context per process (what the bot does now). One command, prints a table,
ratios from one run; not a test.

    PYTHONPATH=. python bench/bench_tls_contexts.py [--calls 40]

Both sides trust the same enterprise-sized bundle (certifi's public roots plus the lab's CA, named by
SSL_CERT_FILE as an administrator would), so the only difference is how often it is loaded. The Slack
side calls `auth.test` on an HTTPS stand-in for slack.com on 127.0.0.1; the WS-Man side is a cold check
(the bot's remote path, its smallest script) against a lab server in another process.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import certifi
from slack_sdk import WebClient

from bench._common import print_table
from commands.lab.https_stub import https_json_api
from commands.lab.lab import LAB_PASSWORD, lab_ca_bundle


def _cpu_per_call(calls: int, call: object) -> float:
    assert callable(call)
    call()  # untimed: whatever is built once is built here
    started = time.process_time()
    for _ in range(calls):
        call()
    return (time.process_time() - started) / calls * 1000


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=40)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        bundle = Path(tmp) / "enterprise.pem"
        bundle.write_bytes(Path(certifi.where()).read_bytes() + Path(lab_ca_bundle()).read_bytes())
        os.environ["SSL_CERT_FILE"] = str(bundle)  # the trust both sides use, read by OpenSSL's defaults
        certificates = bundle.read_bytes().count(b"BEGIN CERTIFICATE")
        rows = [("trust store", f"{certificates} certificates (public roots + the lab CA)")]

        from bot.slack.app import make_web_client  # after SSL_CERT_FILE: its context loads that bundle

        with https_json_api(b'{"ok": true, "user_id": "U0BOT0001"}') as url:
            per_call = WebClient(token="xoxb-bench", base_url=url)  # urllib builds a context per call
            shared = make_web_client("xoxb-bench", url)
            slack_per_call = _cpu_per_call(args.calls, per_call.auth_test)
            slack_shared = _cpu_per_call(args.calls, shared.auth_test)
        rows += [
            ("Slack auth.test over HTTPS, a context per call (WebClient given none)", f"{slack_per_call:.1f} ms CPU"),
            ("Slack auth.test over HTTPS, the bot's shared context", f"{slack_shared:.1f} ms CPU"),
            ("  per-call vs shared", f"{slack_per_call / slack_shared:.1f}x"),
        ]

        from bench.bench_sweep import lab_process
        from commands import psrp
        from commands.psrp import RemoteSession

        with lab_process(1, 0.0, "https") as (lab_config, _pid):
            lab_server = next(iter(lab_config.servers.values()))
            assert lab_server.ca_bundle  # the CA of the lab in that process
            winrm_bundle = Path(tmp) / "enterprise-winrm.pem"
            winrm_bundle.write_bytes(Path(certifi.where()).read_bytes() + Path(lab_server.ca_bundle).read_bytes())
            server_cfg = replace(lab_server, ca_bundle=str(winrm_bundle))

            def cold_check() -> None:
                with RemoteSession(server_cfg, LAB_PASSWORD) as session:
                    session.run("remoteaccess_state")

            shared_ms = _cpu_per_call(args.calls, cold_check)
            share = psrp._TRUST.share
            psrp._TRUST.share = lambda adapter: None  # type: ignore[method-assign] # urllib3's own way
            try:
                per_connection_ms = _cpu_per_call(args.calls, cold_check)
            finally:
                psrp._TRUST.share = share  # type: ignore[method-assign]
        rows += [
            ("WS-Man cold check (smallest script), bundle loaded per connection (urllib3's default)", f"{per_connection_ms:.1f} ms CPU"),
            ("WS-Man cold check (smallest script), the runner's shared context", f"{shared_ms:.1f} ms CPU"),
            ("  per-connection vs shared", f"{per_connection_ms / shared_ms:.1f}x"),
        ]
    print_table(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
