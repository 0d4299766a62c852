"""The PSRP runner: run shipped scripts on a server over PowerShell Remoting (DESIGN 2, 9).

One `RemoteSession` holds one pypsrp `WSMan` (one HTTP keep-alive connection, authenticated once)
and one `RunspacePool`; each `.run()` is one pipeline: the script text goes with `add_script`, every
value with `add_parameter` after `validate_params`, and the script writes exactly one JSON string.
Every failure becomes a `RemoteError` whose kind the user understands (unreachable, tls, auth,
timeout, script_failed, bad_output) and whose message never contains the password.
No pypsrp type leaves this module.
"""

from __future__ import annotations

import contextlib
import functools
import heapq
import importlib.util
import itertools
import json
import logging
import math
import os
import socket
import ssl
import sys
import threading
import time
import xml.etree.ElementTree as ET
from collections import OrderedDict
from collections.abc import Callable, Hashable, Mapping
from types import TracebackType
from typing import Any

import requests
import requests.adapters
import requests.utils
import spnego
from pypsrp.exceptions import AuthenticationError, WinRMError, WinRMTransportError, WSManFaultError
from pypsrp.messages import CreatePipeline
from pypsrp.negotiate import HTTPNegotiateAuth
from pypsrp.powershell import Fragmenter, PowerShell, PSInvocationState, RunspacePool
from pypsrp.serializer import Serializer
from pypsrp.wsman import WSMan
from spnego._ntlm_raw.crypto import ntowfv1  # pyspnego's own MD4 (OpenSSL 3 may not offer MD4)
from urllib3.util.ssl_ import create_urllib3_context

from commands.errors import ConfigError, RemoteError, RemoteErrorKind
from commands.jea import DEFAULT_CONFIGURATION, function_name
from commands.scripts import load_script, validate_params
from commands.server import ServerConfig
from commands.snapshot import MAX_SNAPSHOT_BYTES

log = logging.getLogger(__name__)

OPERATION_TIMEOUT_FAULT = 2150858793
#: ERROR_ACCESS_DENIED as a WS-Man fault code: the session configuration refused the account.
ACCESS_DENIED_FAULT = 5
# One WS-Man long-poll (Receive) waits at most this long; the overall deadline is operation_timeout.
MAX_WSMAN_POLL = 20
#: Events per provider the probe returns (DOMAIN 14: a broken key can log thousands of 36870s).
DEFAULT_MAX_EVENTS = 100
#: The most a script's answer may weigh on the wire: the 10 MB snapshot limit, base64 in SOAP envelopes
#: (4/3), plus the envelopes. Reading stops there: a runaway answer is never held in memory whole.
MAX_ANSWER_WIRE_BYTES = MAX_SNAPSHOT_BYTES * 3 // 2 + 1024 * 1024


class ExchangeDeadlineExceeded(requests.exceptions.RequestException):
    """One WS-Man exchange (request and whole answer) did not finish by its wall-clock deadline."""


class AnswerTooLarge(requests.exceptions.RequestException):
    """A script's answer passed MAX_ANSWER_WIRE_BYTES; reading stopped there."""


class _Exchange:
    """One HTTP exchange under a watchdog: the connection it uses, and whether its time ran out."""

    def __init__(self) -> None:
        self.conn: Any = None
        self.expired = False
        self.lock = threading.Lock()

    def expire(self) -> None:
        # requests' read timeout is per read: a server that sends a byte a second never trips it. At
        # the deadline the watchdog shuts the socket down, which ends the blocked read at once.
        with self.lock:
            self.expired = True
            sock = getattr(self.conn, "sock", None)
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


class _Watchdog:
    """One thread for the deadlines of every exchange of the process.

    A `threading.Timer` per WS-Man request started and ended a thread each time (7 per cold check);
    this keeps the deadlines in a heap and wakes for the earliest. `cancel` marks an entry dead; dead
    entries are dropped when they reach the top, or all at once when they are most of the heap.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, _Exchange]] = []
        self._live: set[int] = set()
        self._ids = itertools.count()
        self._thread: threading.Thread | None = None

    def watch(self, seconds: float, exchange: _Exchange) -> int:
        """Call `exchange.expire()` in `seconds` unless cancelled; returns the handle for `cancel`."""
        handle = next(self._ids)
        with self._cond:
            heapq.heappush(self._heap, (time.monotonic() + seconds, handle, exchange))
            self._live.add(handle)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="sstp-wsman-watchdog", daemon=True)
                self._thread.start()
            if self._heap[0][1] == handle:
                self._cond.notify()  # the new deadline is the earliest: sleep less
        return handle

    def cancel(self, handle: int) -> None:
        with self._cond:
            self._live.discard(handle)
            if len(self._heap) > 64 and len(self._live) * 2 < len(self._heap):
                self._heap = [entry for entry in self._heap if entry[1] in self._live]
                heapq.heapify(self._heap)

    def _run(self) -> None:
        while True:
            with self._cond:
                while True:
                    while self._heap and self._heap[0][1] not in self._live:
                        heapq.heappop(self._heap)
                    if not self._heap:
                        self._cond.wait()
                        continue
                    left = self._heap[0][0] - time.monotonic()
                    if left > 0:
                        self._cond.wait(left)
                        continue
                    _, handle, exchange = heapq.heappop(self._heap)
                    self._live.discard(handle)
                    break
            exchange.expire()  # outside the lock: it shuts a socket down


_WATCHDOG = _Watchdog()


class _GuardedAdapter(requests.adapters.BaseAdapter):
    """Wraps the adapter pypsrp mounted: a wall-clock deadline and a byte budget per exchange (issue 14).

    Nothing global is patched: the wrapper is mounted on this session's own `requests.Session`, and
    the connection an exchange uses is learnt from this adapter's own urllib3 pools.
    """

    def __init__(
        self, inner: requests.adapters.HTTPAdapter, deadline: Callable[[], float], budget: Callable[[int], None]
    ) -> None:
        super().__init__()
        self.inner = inner
        self._deadline = deadline  # seconds left for this exchange
        self._budget = budget  # called with each chunk's size; raises AnswerTooLarge past the cap
        self._local = threading.local()
        pools = dict(inner.poolmanager.pool_classes_by_scheme)
        for scheme, pool_cls in list(pools.items()):
            pools[scheme] = self._watching(pool_cls)  # type: ignore[assignment]
        inner.poolmanager.pool_classes_by_scheme = pools

    def _watching(self, pool_cls: Any) -> Callable[..., Any]:
        local = self._local

        def make(*args: Any, **kwargs: Any) -> Any:
            pool = pool_cls(*args, **kwargs)
            get_conn = pool._get_conn

            def _get_conn(*a: Any, **kw: Any) -> Any:
                conn = get_conn(*a, **kw)
                exchange = getattr(local, "exchange", None)
                if exchange is not None:
                    with exchange.lock:
                        exchange.conn = conn
                return conn

            pool._get_conn = _get_conn
            return pool

        return make

    def send(self, request: requests.PreparedRequest, stream: bool = False, timeout: Any = None,
             verify: Any = True, cert: Any = None, proxies: Any = None) -> requests.Response:
        seconds = self._deadline()
        if seconds <= 0:
            raise ExchangeDeadlineExceeded("no time left for another WS-Man request")
        exchange = _Exchange()
        self._local.exchange = exchange
        watch = _WATCHDOG.watch(seconds, exchange)
        try:
            response = self.inner.send(request, stream=True, timeout=timeout, verify=verify, cert=cert, proxies=proxies)
            # Requests the auth handler sends after a 401 go through `response.connection`: keep them guarded.
            response.connection = self  # type: ignore[assignment]
            # A 401 challenge is left unread: pypsrp's Negotiate handler reads the TLS peer certificate
            # from its socket for channel binding (and its body is empty).
            if not stream and response.status_code != 401:
                body = bytearray()
                for chunk in response.raw.stream(64 * 1024, decode_content=False):
                    self._budget(len(chunk))
                    body.extend(chunk)
                response._content = bytes(body)  # what Response.content would have read
                response.raw.release_conn()
        except AnswerTooLarge:
            with contextlib.suppress(Exception):
                response.close()
            raise
        except Exception as exc:
            if exchange.expired:
                raise ExchangeDeadlineExceeded(f"the answer did not complete within {seconds:.0f} s") from exc
            raise
        finally:
            _WATCHDOG.cancel(watch)
            self._local.exchange = None
        if exchange.expired:
            raise ExchangeDeadlineExceeded(f"the answer did not complete within {seconds:.0f} s")
        return response

    def close(self) -> None:
        self.inner.close()


class _TrustContexts:
    """One verifying `ssl.SSLContext` per trust store, shared by every WS-Man connection of the process.

    Without it urllib3 builds a context for each new connection and loads the CA bundle into it:
    ~33 ms of CPU per cold check with the default trust (certifi's ~150 roots), more than the rest of
    the check. The context is the one urllib3 would build (`create_urllib3_context`, hostname checked,
    no CN fallback) with the same bundle loaded, once; a bundle file that changes (renewed corporate
    CA) is loaded afresh, keyed by its modification time and size.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._contexts: dict[tuple[str, int, int], ssl.SSLContext] = {}

    def get(self, verify: Any) -> ssl.SSLContext | None:
        """The context for requests' `verify` value; None when requests should do as it always does
        (verification off, or a trust store that cannot be read: requests then reports it)."""
        if verify is False or verify is None:
            return None
        path = requests.utils.DEFAULT_CA_BUNDLE_PATH if verify is True else str(verify)
        try:
            st = os.stat(path)
        except (OSError, ValueError):
            return None
        key = (path, st.st_mtime_ns, st.st_size)
        with self._lock:
            context = self._contexts.get(key)
        if context is not None:
            return context
        context = create_urllib3_context(cert_reqs=ssl.CERT_REQUIRED)
        if os.path.isdir(path):
            context.load_verify_locations(capath=path)
        else:
            context.load_verify_locations(cafile=path)
        with self._lock:
            stale = [k for k in self._contexts if k[0] == path]
            for k in stale:
                del self._contexts[k]
            return self._contexts.setdefault(key, context)

    def share(self, adapter: requests.adapters.HTTPAdapter) -> None:
        """Make `adapter`'s verifying HTTPS pools use the shared context (requests' documented way:
        `ssl_context` in the pool key attributes, the CA-file keys removed)."""
        build = adapter.build_connection_pool_key_attributes
        verify_pool = adapter.cert_verify
        contexts = self

        def build_connection_pool_key_attributes(
            request: requests.PreparedRequest, verify: Any, cert: Any = None
        ) -> tuple[dict[str, Any], dict[str, Any]]:
            host_params, pool_kwargs = build(request, verify, cert)
            # A client certificate would be loaded into the context: such a session keeps its own.
            context = contexts.get(verify) if cert is None and host_params.get("scheme") == "https" else None
            if context is not None:
                pool_kwargs.pop("ca_certs", None)
                pool_kwargs.pop("ca_cert_dir", None)
                pool_kwargs["ssl_context"] = context
            return host_params, pool_kwargs

        def cert_verify(conn: Any, url: str, verify: Any, cert: Any) -> None:
            verify_pool(conn, url, verify, cert)  # its checks (the bundle exists) and settings stay
            if getattr(conn, "conn_kw", {}).get("ssl_context") is not None and conn.cert_reqs == "CERT_REQUIRED":
                conn.ca_certs = None  # already in the shared context: not loaded again per connection
                conn.ca_cert_dir = None

        adapter.build_connection_pool_key_attributes = build_connection_pool_key_attributes  # type: ignore[method-assign]
        adapter.cert_verify = cert_verify  # type: ignore[method-assign]


_TRUST = _TrustContexts()


#: pypsrp's WSMan() re-registers its XML namespaces in ElementTree's process-wide map (delete, then
#: add): built in two threads at once, one could fail with "dictionary keys changed during iteration"
#: (seen ending a 25-worker cold sweep). Sessions are built one at a time; their requests are not.
_WSMAN_BUILD_LOCK = threading.Lock()

#: Strings at least this long (script texts) have their CLIXML form remembered (`_ScriptSerializer`).
_REMEMBERED_STRING_CHARS = 1024


_PLAIN_SERIALIZER = Serializer()  # only its string escaping is used: no cipher, no state


@functools.lru_cache(maxsize=64)
def _clixml_string(value: str) -> str | None:
    return _PLAIN_SERIALIZER._serialize_string(value)


#: CREATE_PIPELINE bodies remembered per process (`_PipelineMessages`): a few per server config for
#: the probe, one per distinct set of fix parameters; the oldest go first.
_REMEMBERED_PIPELINES = 128


class _PipelineMessages:
    """The serialized body (CLIXML bytes) of CREATE_PIPELINE messages, by what they were built from.

    Serializing the pipeline was the largest share of a warm check's CPU: pypsrp deep-copies the
    command list twice and builds an ElementTree of the ~29 KB probe script, then renders it, on every
    Command. The body holds no id, key or time (MS-PSRP 2.2.2.10: the pool and pipeline ids are in the
    message header, which pypsrp still builds per message), and pypsrp's serializer starts every
    top-level message from clean reference counters, so the same inputs always give the same bytes.
    """

    def __init__(self, capacity: int = _REMEMBERED_PIPELINES) -> None:
        self._capacity = capacity
        self._bodies: OrderedDict[Hashable, bytes] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0

    def get(self, key: Hashable) -> bytes | None:
        with self._lock:
            body = self._bodies.get(key)
            if body is not None:
                self._bodies.move_to_end(key)
                self.hits += 1
            return body

    def put(self, key: Hashable, body: bytes) -> None:
        with self._lock:
            self._bodies[key] = body
            self._bodies.move_to_end(key)
            while len(self._bodies) > self._capacity:
                self._bodies.popitem(last=False)


_PIPELINE_MESSAGES = _PipelineMessages()


class _ScriptSerializer(Serializer):
    """pypsrp's serializer, remembering the CLIXML escaping of long strings and whole pipeline bodies.

    pypsrp escapes every control character of a string (each newline of a script) through a Python
    callback, on every Command: for the ~500-line probe that was a fifth of a warm check's CPU. The
    escaped form is a pure function of the text (no key, no server, no session in it), so the shipped
    scripts are escaped once per process. Short strings (parameter values) are not remembered.

    A CREATE_PIPELINE built by `_KeyedPowerShell` carries the key of everything it was built from; its
    rendered body is remembered under that key (`_PipelineMessages`). pypsrp 0.9.1's `Message.pack`
    sends a serializer result that is already bytes as it is (messages.py: `if not isinstance(msg,
    bytes)`), which is what this returns for such a message.
    """

    def serialize(  # type: ignore[override] # bytes for a keyed pipeline: see the class docstring
        self, value: Any, metadata: Any = None, parent: Any = None, clear: bool = True
    ) -> ET.Element | bytes | None:
        key = getattr(value, "sstp_message_key", None) if parent is None and clear else None
        if key is None:
            return super().serialize(value, metadata, parent, clear)
        body = _PIPELINE_MESSAGES.get(key)
        if body is None:
            element = super().serialize(value, metadata, parent, clear)
            assert element is not None
            body = ET.tostring(element, encoding="utf-8", method="xml")  # as Message.pack renders it
            _PIPELINE_MESSAGES.put(key, body)
        return body

    def _serialize_string(self, value: str | None) -> str | None:
        if value is None or len(value) < _REMEMBERED_STRING_CHARS:
            return super()._serialize_string(value)
        return _clixml_string(value)


class _KeyedPowerShell(PowerShell):
    """A pypsrp PowerShell whose CREATE_PIPELINE carries `message_key` (see `_ScriptSerializer`).

    The key must name everything the message body is built from. `RemoteSession.run` builds every
    pipeline the same way (one command, its parameters, `begin_invoke()` with its defaults, the pool's
    default apartment state and no host), so its key is the protocol version, the command, the scope
    flag and the typed parameter values.
    """

    def __init__(self, pool: RunspacePool, message_key: Hashable) -> None:
        super().__init__(pool)
        self.message_key = message_key

    def _invoke(self, msg: Any) -> None:
        if isinstance(msg, CreatePipeline):
            msg.sstp_message_key = self.message_key  # type: ignore[attr-defined]
        super()._invoke(msg)


@functools.lru_cache(maxsize=64)
def _ntlm_credential(username: str, password: str) -> spnego.NTLMHash:
    """The NTLM credential for `username`: its NT hash only (NTLMv2 never uses the LM hash)."""
    return spnego.NTLMHash(username=username, nt_hash=ntowfv1(password).hex())


class RemoteSession:
    """One authenticated connection and runspace pool on one server; a context manager."""

    def __init__(self, server: ServerConfig, password: str | None) -> None:
        self.server = server
        self._password = password
        self._wsman: WSMan | None = None
        self._pool: RunspacePool | None = None
        self._secrets = [password] if password else []
        #: Wall-clock end of the current operation (open or one script), on time.monotonic.
        self._deadline = math.inf
        self._answer_bytes = 0

    # --- lifecycle --------------------------------------------------------------------------------

    def __enter__(self) -> RemoteSession:
        self.open()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def open(self) -> None:
        """Connect, authenticate and open the runspace pool (Create + Receive)."""
        if self._pool is not None:
            return
        self._wsman = self._build_wsman()
        pool = RunspacePool(self._wsman, configuration_name=self.server.configuration_name)
        # The same serializer, remembering the escaped script texts (its cipher stays this pool's own).
        pool._serializer = _ScriptSerializer()
        pool._fragmenter = Fragmenter(self._wsman.max_payload_size, pool._serializer)
        self._start_operation()
        try:
            self._call(pool.open)
        except BaseException:
            self._wsman.close()
            self._wsman = None
            raise
        self._pool = pool

    def close(self) -> None:
        """Delete the shell and drop the connection; never raises."""
        pool, wsman = self._pool, self._wsman
        self._pool = self._wsman = None
        try:
            if pool is not None:
                pool.close()
        except Exception as exc:  # the server may already be gone: closing is best effort
            log.debug("%s: closing the runspace pool failed: %s", self.server.name, self._scrub(str(exc)))
        finally:
            if wsman is not None:
                wsman.close()

    def _build_wsman(self) -> WSMan:
        s = self.server
        if s.transport not in ("https", "http"):
            raise RemoteError("bad_output", s.name, f"unsupported transport {s.transport!r}")
        ssl_on = s.transport == "https"
        if not ssl_on and s.auth == "basic":
            # Basic over HTTP would send the password in clear and cannot be message-encrypted.
            raise RemoteError(
                "auth", s.name, f"refusing Basic authentication over HTTP to {s.name}: use transport https"
            )
        if s.auth in ("ntlm", "basic", "credssp") and not s.username:
            # Only Kerberos (negotiate/kerberos) can work from a ticket without a user name.
            raise ConfigError(f"servers.{s.name}.username is required with auth = {s.auth!r}")
        cert_validation: bool | str = True
        if ssl_on:
            if not s.verify_tls:
                cert_validation = False
            elif s.ca_bundle:
                if not os.path.isfile(s.ca_bundle):
                    raise ConfigError(f"servers.{s.name}.ca_bundle: {s.ca_bundle} is not a readable file")
                cert_validation = s.ca_bundle
        if s.auth == "basic" and self._password is not None:
            try:
                self._password.encode("latin-1")
            except UnicodeEncodeError:
                # requests encodes Basic credentials as Latin-1; anything else fails deep inside it with
                # a message that names the character and its position (issue 14). Say so, never it.
                raise ConfigError(
                    f"servers.{s.name}: the password has characters Basic authentication cannot carry "
                    "(requests sends Basic credentials as Latin-1); use auth = \"negotiate\" or \"ntlm\", or a "
                    "password of Latin-1 characters"
                ) from None
        if s.auth == "credssp":
            _require_credssp(s.name)
        elif s.auth == "kerberos":
            _require_kerberos(s.name)
        op_timeout = max(1, min(MAX_WSMAN_POLL, math.ceil(s.operation_timeout)))
        with _WSMAN_BUILD_LOCK:
            wsman = self._new_wsman(s, ssl_on, cert_validation, op_timeout)
        self._guard(wsman)
        return wsman

    def _new_wsman(self, s: ServerConfig, ssl_on: bool, cert_validation: bool | str, op_timeout: int) -> WSMan:
        return WSMan(
            s.host,
            port=s.port,
            username=s.username,
            password=self._password,
            ssl=ssl_on,
            auth=s.auth,
            cert_validation=cert_validation,  # type: ignore[arg-type] # pypsrp accepts a CA bundle path
            connection_timeout=max(1, math.ceil(s.connect_timeout)),
            # The HTTP read timeout must outlast one WS-Man long-poll (pypsrp's own advice).
            read_timeout=op_timeout + max(1, min(10, op_timeout)),
            operation_timeout=op_timeout,
            # HTTP needs message encryption (NTLM/Negotiate/Kerberos/CredSSP); HTTPS has TLS.
            encryption="auto",
            no_proxy=True,
        )

    def _guard(self, wsman: WSMan) -> None:
        """Mount the deadline and byte-budget wrapper on the requests session pypsrp will use."""
        transport = wsman.transport
        # pypsrp 0.9.1 builds its session on the first request; build it now (its own method, so its
        # proxy, TLS, retry and auth settings stay) and wrap the adapters it mounted.
        session = transport._build_session()
        for prefix in ("http://", "https://"):
            inner = session.get_adapter(prefix + "x")
            if isinstance(inner, requests.adapters.HTTPAdapter):
                if prefix == "https://":
                    _TRUST.share(inner)
                session.mount(prefix, _GuardedAdapter(inner, self._seconds_left, self._count))
        # pypsrp read the environment's settings into the session above (and no_proxy=True turned
        # proxies off); left on, requests would re-read every environment variable and ~/.netrc on
        # each WS-Man request, for nothing.
        session.trust_env = False
        auth = session.auth
        if (
            self.server.auth == "ntlm"
            and isinstance(auth, HTTPNegotiateAuth)
            and isinstance(auth.username, str)
            and auth.password
        ):
            # NTLM needs only the NT hash (MS-NLMP 3.3.2, NTLMv2); pyspnego derives it and also the
            # LM hash (DES in pure Python, ~1 ms) from the password on every new connection. Derived
            # once per process and handed over as pyspnego's NTLMHash credential, it is the same proof.
            auth.username = [_ntlm_credential(auth.username, auth.password)]  # type: ignore[assignment]
            auth.password = None
        transport.session = session

    def _start_operation(self) -> None:
        """A new operation (open, or one script) gets operation_timeout of wall-clock time and a fresh budget."""
        self._deadline = time.monotonic() + self.server.operation_timeout
        self._answer_bytes = 0

    def _seconds_left(self) -> float:
        # One exchange never outlasts the operation it belongs to; a long-poll Receive is also bounded
        # by pypsrp's read timeout. A small grace lets the server's own OperationTimeout fault arrive.
        return max(0.0, self._deadline - time.monotonic()) + 1.0

    def _count(self, size: int) -> None:
        self._answer_bytes += size
        if self._answer_bytes > MAX_ANSWER_WIRE_BYTES:
            raise AnswerTooLarge(f"more than {MAX_ANSWER_WIRE_BYTES} bytes")

    # --- running scripts --------------------------------------------------------------------------

    def run(self, script: str, **params: Any) -> dict[str, Any]:
        """Run one shipped script with typed parameters; returns the JSON document it wrote."""
        clean = validate_params(script, params)
        text = load_script(script)  # a plan action that is not a script is refused before connecting
        self.open()
        assert self._pool is not None
        jea = self.server.configuration_name.lower() != DEFAULT_CONFIGURATION.lower()
        pool = self._pool
        # Everything the CREATE_PIPELINE body depends on (`_KeyedPowerShell`): the server's protocol
        # version (pypsrp adds merge fields from 2.2 and 2.3 on), the command, and each value with its
        # type, so True and 1 never share a body. The pool's apartment state and host are pypsrp's
        # defaults (never set here); they are in the key anyway, so a change could not reuse a body.
        key = (
            pool.protocol_version,
            "function" if jea else "script",
            function_name(script) if jea else text,
            tuple((name, type(value).__name__, value) for name, value in clean.items()),
            pool.apartment_state,
            pool.host is None,
        )
        ps = _KeyedPowerShell(pool, key)
        if jea:
            # A JEA endpoint (DESIGN 12) runs in NoLanguage mode: call the module's function by name,
            # send no script text; the values still go only through add_parameter. A function runs in
            # its own scope, as a script sent with use_local_scope does.
            ps.add_cmdlet(function_name(script))
        else:
            # Every script in its own local scope (DOMAIN 14, DESIGN 9 [2]): without it pypsrp sends Nil and
            # PowerShell dot-sources the script into the runspace, so `[string]$Site` of one script would
            # still constrain `$site` in the next (the re-probe's IIS bindings would all read null).
            ps.add_script(text, use_local_scope=True)
        for name, value in clean.items():
            ps.add_parameter(name, value)
        self._start_operation()
        deadline = self._deadline
        self._call(ps.begin_invoke)
        while ps.state == PSInvocationState.RUNNING:
            if time.monotonic() > deadline:
                # Stop the pipeline (a Signal): the pool has one runspace, so a step left running
                # would hold the re-check behind it. Best effort: the timeout is what we report.
                with contextlib.suppress(Exception):
                    ps.stop()
                raise RemoteError(
                    "timeout",
                    self.server.name,
                    f"{script} on {self.server.name} did not finish within {self.server.operation_timeout:g} s "
                    "(operation_timeout)",
                )
            self._call(ps.poll_invoke)
        return self._result(script, ps)

    def probe(self, event_hours: int = 24, max_events: int = DEFAULT_MAX_EVENTS) -> dict[str, Any]:
        """Run probe.ps1: the server's snapshot v1 (at most `max_events` events per provider)."""
        return self.run("probe", EventHours=event_hours, MaxEvents=max_events)

    def _result(self, script: str, ps: PowerShell) -> dict[str, Any]:
        name = self.server.name
        # pypsrp 0.9.1: had_errors is only set when the pipeline Failed; non-terminating errors are
        # only in streams.error (DESIGN 10). Both mean the script did not do what it should.
        if ps.had_errors or ps.streams.error:
            records = list(ps.streams.error)
            messages = [self._scrub(_error_message(r)) for r in records] or ["the pipeline failed"]
            if any(_is_access_denied(r) for r in records):
                # Still a script failure (the error kinds are fixed by the CLI contract); the message
                # names the cause an admin can act on.
                raise RemoteError(
                    "script_failed",
                    name,
                    f"{script} on {name} was refused: {messages[0]} (the WinRM account must be an elevated "
                    "local administrator)",
                )
            kind = "terminating error" if ps.had_errors else "error"
            raise RemoteError("script_failed", name, f"{script} on {name} failed with a {kind}: {'; '.join(messages)}")
        output = list(ps.output)
        if len(output) != 1 or not isinstance(output[0], str):
            raise RemoteError(
                "bad_output",
                name,
                f"{script} on {name} wrote {len(output)} output object(s) instead of one JSON string; is the "
                "shipped script installed unchanged?",
            )
        try:
            document = json.loads(output[0])
        except json.JSONDecodeError as exc:
            raise RemoteError("bad_output", name, f"{script} on {name} wrote invalid JSON ({exc.msg} at {exc.pos})") from None
        except RecursionError:
            # Nesting deeper than Python's decoder goes (no probe writes more than -Depth 8): this
            # server's check is bad output, and the rest of a fleet check goes on.
            raise RemoteError("bad_output", name, f"{script} on {name} wrote JSON nested too deeply to read") from None
        if not isinstance(document, dict):
            raise RemoteError("bad_output", name, f"{script} on {name} wrote JSON that is not an object")
        return document

    # --- error mapping ----------------------------------------------------------------------------

    def _call(self, fn: Any, *args: Any) -> Any:
        try:
            return fn(*args)
        except RemoteError:
            raise
        except Exception as exc:
            raise self._map(exc) from None

    def _scrub(self, text: str) -> str:
        for secret in self._secrets:
            if secret:
                text = text.replace(secret, "********")
        return text

    def _map(self, exc: BaseException) -> RemoteError:
        s = self.server
        name = s.name
        where = f"{s.transport}://{s.host}:{s.port}"
        kind: RemoteErrorKind
        if (
            isinstance(exc, AuthenticationError)
            or (isinstance(exc, WinRMTransportError) and exc.code == 401)
            or _is_credssp_auth_error(exc)
        ):
            kind, message = "auth", (
                f"authentication to {name} ({where}) failed with {s.auth} as {s.username}: check the username "
                "and password (password_env/password_file), and that the account may use WinRM"
            )
        elif isinstance(exc, requests.exceptions.SSLError) or _caused_by(exc, ssl.SSLError):
            text = str(exc)
            if "CERTIFICATE_VERIFY_FAILED" in text or "certificate verify failed" in text:
                kind, message = "tls", (
                    f"the WinRM HTTPS certificate of {name} ({where}) is not trusted: set ca_bundle to the CA "
                    "that issued it, or fix the server's WinRM listener certificate"
                )
                if "match" in text or "mismatch" in text:
                    message = (
                        f"the WinRM HTTPS certificate of {name} does not match the host name {s.host}: use the "
                        "name in the certificate as host, or reissue the listener certificate"
                    )
            else:
                kind, message = "tls", f"TLS handshake with {name} ({where}) failed: {self._scrub(_short(text))}"
        elif isinstance(exc, AnswerTooLarge):
            kind, message = "bad_output", (
                f"{name} sent more than {MAX_SNAPSHOT_BYTES // (1024 * 1024)} MB for one script (the snapshot "
                "limit); reading stopped there. Lower the probe's event count or check the server"
            )
        elif isinstance(exc, ExchangeDeadlineExceeded):
            kind, message = "timeout", (
                f"{name} ({where}) did not finish answering within operation_timeout "
                f"{s.operation_timeout:g} s (the answer arrived too slowly)"
            )
        elif isinstance(exc, (requests.exceptions.ConnectTimeout, requests.exceptions.ReadTimeout, socket.timeout)):
            kind, message = "timeout", (
                f"{name} ({where}) did not answer in time (connect_timeout {s.connect_timeout:g} s, "
                f"operation_timeout {s.operation_timeout:g} s)"
            )
        elif isinstance(exc, requests.exceptions.ConnectionError):
            text = str(exc)
            if "Name or service not known" in text or "nodename nor servname" in text or "getaddrinfo" in text:
                message = f"cannot resolve {s.host} (server {name}): check the host name in the inventory"
            elif "refused" in text.lower():
                message = f"{name} refused the connection on {where}: is WinRM listening on port {s.port}?"
            elif "reset" in text.lower() or "aborted" in text.lower():
                message = f"{name} closed the connection ({where}): check the WinRM listener and firewalls"
            else:
                message = f"cannot connect to {name} ({where}): {self._scrub(_short(text))}"
            kind = "unreachable"
        elif isinstance(exc, WSManFaultError):
            if exc.code == OPERATION_TIMEOUT_FAULT:
                kind, message = "timeout", f"{name} did not complete the WS-Man operation in time"
            elif exc.code == ACCESS_DENIED_FAULT:
                # Authenticated, then refused by the session configuration's permissions: on
                # Microsoft.PowerShell the account is not an administrator; on the JEA endpoint it is
                # not in the group its role definitions name (DESIGN 12).
                kind, message = "auth", (
                    f"{name} refused {s.username or 'the account'} on the {s.configuration_name} endpoint (Access is "
                    "denied): the account must be a local administrator for Microsoft.PowerShell, or in the "
                    "group the SstpBot endpoint was exported for (endpoint export --group)"
                )
            else:
                kind, message = "bad_output", (
                    f"{name} answered with a WS-Management fault {exc.code}: {self._scrub(_short(exc.reason or ''))}"
                )
        elif isinstance(exc, WinRMTransportError):
            kind, message = "bad_output", (
                f"{name} answered HTTP {exc.code} on {where}: {self._scrub(_short(exc.response_text or ''))}"
            )
        elif isinstance(exc, WinRMError):
            kind, message = "bad_output", f"unexpected WinRM answer from {name}: {self._scrub(_short(str(exc)))}"
        elif isinstance(exc, (OSError, requests.exceptions.RequestException)):
            kind, message = "unreachable", f"cannot talk to {name} ({where}): {self._scrub(_short(str(exc)))}"
        else:
            kind, message = "bad_output", (
                f"unexpected PSRP answer from {name}: {type(exc).__name__}: {self._scrub(_short(str(exc)))}"
            )
        return RemoteError(kind, name, message)


def _is_credssp_auth_error(exc: BaseException) -> bool:
    """requests-credssp's own authentication failure (the server does not offer or accept CredSSP)."""
    module = type(exc).__module__ or ""
    return module.startswith("requests_credssp") and type(exc).__name__ == "AuthenticationException"


def _require_credssp(name: str) -> None:
    """CredSSP needs the `requests-credssp` package, which pypsrp imports lazily (the `credssp` extra)."""
    try:
        import requests_credssp  # noqa: F401
    except ImportError:
        raise ConfigError(
            f"servers.{name}.auth = \"credssp\" needs the requests-credssp package: install sstp-bot with the "
            "credssp extra (pip install 'sstp-bot[credssp]')"
        ) from None


def _require_kerberos(name: str) -> None:
    """Kerberos outside Windows goes through GSSAPI: pyspnego needs the `gssapi` package (pypsrp's
    `kerberos` extra, and the system's Kerberos library). Without it the exchange would fail deep in
    pyspnego; say what to install instead. (`negotiate` falls back to NTLM without it.)"""
    if sys.platform == "win32" or importlib.util.find_spec("gssapi") is not None:
        return
    raise ConfigError(
        f"servers.{name}.auth = \"kerberos\" needs the gssapi package on this system: install sstp-bot with the "
        "kerberos extra (pip install 'sstp-bot[kerberos]', which needs the system's Kerberos library, e.g. "
        "libkrb5-dev), or use auth = \"negotiate\""
    ) from None


def _caused_by(exc: BaseException, cls: type[BaseException]) -> bool:
    seen = 0
    current: BaseException | None = exc
    while current is not None and seen < 10:
        if isinstance(current, cls):
            return True
        if current.args and isinstance(current.args[0], cls):
            return True
        current = current.__cause__ or current.__context__
        seen += 1
    return False


def _short(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _error_message(record: Any) -> str:
    """The message of a deserialised PowerShell ErrorRecord."""
    exception = getattr(record, "exception", None)
    for props in (getattr(exception, "adapted_properties", None), getattr(exception, "extended_properties", None)):
        if isinstance(props, Mapping) and props.get("Message"):
            return str(props["Message"])
    for attr in ("details_message", "message"):
        value = getattr(record, attr, None)
        if value:
            return str(value)
    return str(record)


def _is_access_denied(record: Any) -> bool:
    # ErrorCategory.PermissionDenied = 18, or the UnauthorizedAccess error id (netsh error 5).
    return getattr(record, "category", None) == 18 or "UnauthorizedAccess" in str(getattr(record, "fq_error", ""))


def probe_server(server: ServerConfig, environ: Mapping[str, str] | None = None, *, event_hours: int = 24) -> dict[str, Any]:
    """One session, one pipeline: the snapshot v1 of `server`."""
    password = server.password(environ)
    with RemoteSession(server, password) as session:
        return session.probe(event_hours)
