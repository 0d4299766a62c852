"""A loopback WinRM/WS-Man endpoint for the PowerShell plugin (DESIGN 10).

Real pypsrp clients talk to it: HTTP/1.1 keep-alive, NTLM/Negotiate (pyspnego acceptor) with WinRM
message encryption or Basic over HTTPS, WS-Man Create/Command/Receive/Send/Signal/Delete, and PSRP
through psrpcore's `ServerRunspacePool`/`ServerPipeline`. What a pipeline does is delegated to a
`ScriptExecutor` (the twin's script runtime); the endpoint only speaks the protocols.

Protocol facts this rests on (DESIGN 10): every response echoes `wsa:RelatesTo`; the Create response
carries the ShellId selector; NTLM is bound to the TCP connection (per-connection auth state,
Content-Length on every response); Receive long-polls and answers the WS-Man OperationTimeout fault
(2150858793) when nothing arrives in time; TCP_NODELAY avoids the Nagle/delayed-ACK 40 ms stall.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import importlib.metadata
import logging
import re
import selectors
import socket
import ssl
import threading
import time
import uuid
import xml.etree.ElementTree as ET
from collections import deque
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any
from xml.sax.saxutils import escape

import psrpcore
import spnego
import spnego.exceptions
from psrpcore import PSRPCoreError, PSRPEvent, PSRPPayload, StreamType
from psrpcore._payload import PSRPMessage, create_message  # prepare_message's own helpers (pinned 0.3.1)
from psrpcore.types import (
    ApplicationPrivateData,
    ErrorCategory,
    ErrorCategoryInfo,
    ErrorRecord,
    NETException,
    PipelineState,
    PSInvocationState,
    PSPrimitiveDictionary,
    PSRPMessageType,
    PSVersion,
    RunspacePoolStateMsg,
    SessionCapability,
    deserialize,
    serialize,
)
from pypsrp.encryption import WinRMEncryption

from commands.lab.outcomes import ScriptExecutor, ScriptOutcome, TerminatingError, WSManError, command_params

if TYPE_CHECKING:
    from commands.lab.jea import JeaMode

log = logging.getLogger(__name__)

# Failing a pipeline with an error record has no public API in psrpcore 0.3.1 (DESIGN 10): the one
# private call is wrapped in `_fail_pipeline`, and the version is pinned here and in pyproject.
_PSRPCORE_VERSION = importlib.metadata.version("psrpcore")
if _PSRPCORE_VERSION != "0.3.1":  # pragma: no cover - guarded by the pin in pyproject.toml
    raise ImportError(f"commands.lab.endpoint needs psrpcore 0.3.1, found {_PSRPCORE_VERSION}")

NS = {
    "s": "http://www.w3.org/2003/05/soap-envelope",
    "wsa": "http://schemas.xmlsoap.org/ws/2004/08/addressing",
    "wsman": "http://schemas.dmtf.org/wbem/wsman/1/wsman.xsd",
    "rsp": "http://schemas.microsoft.com/wbem/wsman/1/windows/shell",
    "wst": "http://schemas.xmlsoap.org/ws/2004/09/transfer",
    "pwsh": "http://schemas.microsoft.com/powershell",
    "f": "http://schemas.microsoft.com/wbem/wsman/1/wsmanfault",
}
_ACTION_PREFIXES = (
    "http://schemas.xmlsoap.org/ws/2004/09/transfer/",
    "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/",
)
POWERSHELL_URI = "http://schemas.microsoft.com/powershell/Microsoft.PowerShell"
COMMAND_DONE = "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/CommandState/Done"
COMMAND_RUNNING = "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/CommandState/Running"
OPERATION_TIMEOUT_CODE = 2150858793
SHELL_NOT_FOUND_CODE = 2150858843
#: DOMAIN 14: a Receive for an unknown CommandId is faulted at once with this code (w:InvalidSelectors).
INVALID_SELECTORS_CODE = 2150858843
#: Outgoing PSRP data is cut into payloads of at most this many bytes, so a Receive can be filled up
#: to the client's MaxEnvelopeSize and no further (DESIGN 10 [2]).
PAYLOAD_CHUNK = 32 * 1024
#: Room left in an envelope for the SOAP headers and the ReceiveResponse around the streams.
ENVELOPE_OVERHEAD = 4096
ENCRYPTED_PROTOCOL = WinRMEncryption.SPNEGO
BOUNDARY = "Encrypted Boundary"


@dataclass(frozen=True)
class RequestRecord:
    """One HTTP request the endpoint answered (tests and benchmarks count these)."""

    time: float
    action: str  # Create, Command, Receive, Send, Signal, Delete, auth, or the raw action
    status: int
    shell_id: str | None = None
    command_id: str | None = None
    connection: int = 0


@dataclass
class EndpointFaults:
    """Transport-level faults a lab server can inject (script-level faults live in the runtime)."""

    http_500: bool = False  # Command answers HTTP 500 with a non-XML body
    wsman_fault: bool = False  # Command answers a WS-Man fault
    delay: float = 0.0  # seconds added before answering every WS-Man request
    trickle: float = 0.0  # seconds between the bytes of every WS-Man answer's body (0: all at once)


def _fail_pipeline(pipeline: psrpcore.ServerPipeline, error: TerminatingError) -> None:
    """End a running pipeline in the Failed state with an error record (pinned psrpcore 0.3.1 internals)."""
    record = ErrorRecord(
        Exception=NETException(Message=error.message),
        CategoryInfo=ErrorCategoryInfo(Category=error.category, Reason=error.error_id),
        FullyQualifiedErrorId=error.error_id,
    )
    pipeline._change_state(PSInvocationState.Failed, error=record)




#: Client messages whose deserialized form the lab only reads: CreatePipeline becomes the pipeline's
#: metadata (psrpcore's server stores it, `_run_pipeline` and the JEA mode read it, see
#: `_frozen_metadata`), SessionCapability and InitRunspacePool are read into the
#: pool's own attributes. Every check sends the same bytes (the ~29 KB probe script text with its
#: `_x000A_` escapes was most of the lab's CPU to deserialize).
_CACHED_MESSAGE_TYPES = frozenset(
    {PSRPMessageType.CreatePipeline, PSRPMessageType.SessionCapability, PSRPMessageType.InitRunspacePool}
)
_CACHE_MAX = 64
#: Larger messages are deserialized every time (the cache keeps its keys: 64 of these at most).
_CACHE_MAX_BYTES = 256 * 1024
_psrpcore_log = logging.getLogger("psrpcore._base")


@dataclass
class _Deserialized:
    """A cached message body, and for CreatePipeline the pipeline metadata read from it (lazily)."""

    value: Any
    metadata: psrpcore.PowerShell | None = None


class _BoundedCache:
    """A small thread-safe map that forgets its oldest entry when full (shared by every lab server)."""

    def __init__(self, maxsize: int = _CACHE_MAX) -> None:
        self._lock = threading.Lock()
        self._items: dict[Any, Any] = {}
        self._maxsize = maxsize
        self.hits = 0
        self.misses = 0

    def get(self, key: Any) -> Any:
        with self._lock:
            found = self._items.get(key)
            if found is None:
                self.misses += 1
            else:
                self.hits += 1
            return found

    def put(self, key: Any, value: Any) -> Any:
        """Store `value` unless another thread stored one meanwhile; return the stored one."""
        with self._lock:
            if key not in self._items and len(self._items) >= self._maxsize:
                self._items.pop(next(iter(self._items)))  # oldest first: dicts keep insertion order
            return self._items.setdefault(key, value)


#: Deserialized client messages keyed by (exact bytes, capabilities). Safe because deserializing is
#: a pure function of those when the message holds no SecureString (`<SS>`, the only element that
#: uses the pool's own session key: such messages are never cached) and nothing mutates the result
#: (see `_CACHED_MESSAGE_TYPES`). A different useLocalScope, script text or parameter is other bytes.
_DESERIALIZED = _BoundedCache()
#: Serialized bodies of the state and capability messages the server sends, keyed by their content
#: (`_serialized_key`): the same few messages every check, whose CLIXML is a pure function of it.
_SERIALIZED = _BoundedCache()


def _frozen_metadata(metadata: psrpcore.PowerShell) -> psrpcore.PowerShell:
    """Cached pipeline metadata, shared by every pipeline that sent the same message. Readers only:
    psrpcore's server stores `metadata` and never touches it again, the lab reads it
    (`_run_pipeline`, `command_params`, `JeaMode.run`). Its lists become tuples, so that a change
    made by mistake fails loudly instead of leaking into another server's pipeline. (psrpcore's
    objects cannot be copied with `copy`.)"""
    for command in metadata.commands:
        command.parameters = tuple(command.parameters)  # type: ignore[assignment]  # read-only on purpose
    metadata.commands = tuple(metadata.commands)  # type: ignore[assignment]  # read-only on purpose
    return metadata


class _LabRunspacePool(psrpcore.ServerRunspacePool):
    """psrpcore's server pool, doing the work every check repeats only once.

    `_process_message` is psrpcore 0.3.1's (pinned above) with `deserialize` replaced by the cache for
    `_CACHED_MESSAGE_TYPES`; `prepare_message` is psrpcore's with `serialize` replaced by a cache for
    the messages `_serialized_key` names. Every other message goes through psrpcore's own code."""

    _capability_memo: tuple[Any, Any, str] | None = None

    def _capability_key(self) -> str:
        """The capabilities (de)serializing depends on, as text; recomputed only when they change."""
        memo = self._capability_memo
        if memo is not None and memo[0] is self.our_capability and memo[1] is self.their_capability:
            return memo[2]
        parts = []
        for cap in (self.our_capability, self.their_capability):
            parts.append("-" if cap is None else "|".join(
                str(getattr(cap, n, None)) for n in ("PSVersion", "protocolversion", "SerializationVersion")))
        key = ";".join(parts)
        self._capability_memo = (self.our_capability, self.their_capability, key)
        return key

    def _process_message(self, message: Any) -> Any:
        if (message.message_type not in _CACHED_MESSAGE_TYPES or len(message.data) > _CACHE_MAX_BYTES
                or b"<SS" in message.data):
            return super()._process_message(message)
        if _psrpcore_log.isEnabledFor(logging.DEBUG):
            _psrpcore_log.debug(
                "Processing PSRP Message - MessageType: %s,  RPID: %s,  PID: %s,  OID: %s, Type: %s - '%s'",
                message.message_type.name, message.runspace_pool_id, message.pipeline_id or "''",
                message.object_id, message.stream_type.name, message.data.decode(),
            )
        key = (bytes(message.data), self._capability_key())
        entry: _Deserialized | None = _DESERIALIZED.get(key)
        if entry is None:
            value = deserialize(ET.fromstring(message.data), cipher=self._cipher,
                                our_capability=self.our_capability, their_capability=self.their_capability)
            entry = _DESERIALIZED.put(key, _Deserialized(value))
        event = PSRPEvent.create(message.message_type, entry.value, message.runspace_pool_id, message.pipeline_id)
        if isinstance(event, psrpcore.CreatePipelineEvent):
            # psrpcore's _process_CreatePipeline, with the metadata read once per distinct message.
            if event.pipeline_id not in self.pipeline_table:
                raise PSRPCoreError(f"Failed to find pipeline for incoming event {event.pipeline_id!s}")
            if entry.metadata is None:
                entry.metadata = _frozen_metadata(event.pipeline)
            self.pipeline_table[event.pipeline_id].metadata = entry.metadata
        else:
            getattr(self, f"_process_{message.message_type.name}")(event)
        return event

    def prepare_message(
        self,
        message: Any,
        message_type: PSRPMessageType | None = None,
        pipeline_id: uuid.UUID | None = None,
        stream_type: StreamType = StreamType.default,
    ) -> None:
        content = _serialized_key(message) if message_type is None else None
        if content is None:
            super().prepare_message(message, message_type, pipeline_id, stream_type)
            return
        key = (content, self._capability_key())
        b_data: bytes | None = _SERIALIZED.get(key)
        if b_data is None:
            element = serialize(message, self._cipher, our_capability=self.our_capability,
                                their_capability=self.their_capability)
            b_data = _SERIALIZED.put(key, ET.tostring(element, encoding="utf-8", method="xml"))
        assert b_data is not None
        # The rest is psrpcore 0.3.1's prepare_message.
        message_type = PSRPMessageType.get_message_id(type(message))
        b_msg = create_message(self._is_client, message_type, b_data, self.runspace_pool_id, pipeline_id)
        object_id = self._fragment_counter
        psrp_message = PSRPMessage(
            message_type, bytearray(b_msg), self.runspace_pool_id, pipeline_id, object_id, stream_type
        )
        if _psrpcore_log.isEnabledFor(logging.DEBUG):
            _psrpcore_log.debug(
                "Queuing PSRP Message - MessageType: %s,  RPID: %s,  PID: %s,  OID: %s, Type: %s - '%s'",
                message_type.name, self.runspace_pool_id, pipeline_id or "''", object_id, stream_type.name,
                b_data.decode(),
            )
        self._send_buffer.append(psrp_message)


def _serialized_key(message: Any) -> tuple[Any, ...] | None:
    """What a server message's CLIXML depends on, for the few messages every check repeats; None for
    any other message (or one carrying an error record or a time zone), which psrpcore serializes."""
    kind = type(message)
    if kind is PipelineState:
        if message.ExceptionAsErrorRecord:
            return None
        return ("PipelineState", int(message.PipelineState))
    if kind is RunspacePoolStateMsg:
        if message.ExceptionAsErrorRecord:
            return None
        return ("RunspacePoolState", int(message.RunspaceState))
    if kind is SessionCapability:
        if message.TimeZone:
            return None
        return ("SessionCapability", str(message.PSVersion), str(message.protocolversion),
                str(message.SerializationVersion))
    if kind is ApplicationPrivateData:
        content = _plain_key(message.ApplicationPrivateData)
        return None if content is None else ("ApplicationPrivateData", content)
    return None


def _plain_key(value: Any) -> tuple[Any, ...] | None:
    """A hashable copy of a value made of dicts, strings, numbers and versions (in order, as
    serialized); None when it holds anything else."""
    kind = type(value)
    if kind is dict or kind is PSPrimitiveDictionary:
        items = []
        for k, v in value.items():
            key, inner = _plain_key(k), _plain_key(v)
            if key is None or inner is None:
                return None
            items.append((key, inner))
        return (kind.__name__, tuple(items))
    if kind in (str, int, bool, float) or kind is PSVersion:
        return (kind.__name__, str(value))
    return None


class _Shell:
    """One RunspacePool (WinRS shell) with its pipelines; psrpcore objects are not thread-safe."""

    def __init__(self, shell_id: str) -> None:
        self.id = shell_id
        self.pool: psrpcore.ServerRunspacePool = _LabRunspacePool()
        self.lock = threading.Lock()
        self.cond = threading.Condition(self.lock)
        # Outgoing PSRP data per target: None = the pool, else the pipeline id. Pool and pipeline
        # data go to separate Receives, so they must not share one queue.
        self.outgoing: dict[uuid.UUID | None, deque[bytes]] = {None: deque()}
        self.pipelines: dict[uuid.UUID, psrpcore.ServerPipeline] = {}
        self.closed = False

    def flush(self) -> None:
        while (payload := self.pool.data_to_send(PAYLOAD_CHUNK)) is not None:
            self.outgoing.setdefault(payload.pipeline_id, deque()).append(payload.data)
        self.cond.notify_all()


class WinRMEndpoint:
    """One emulated Windows server's WinRM listener on 127.0.0.1."""

    def __init__(
        self,
        name: str,
        executor: ScriptExecutor,
        *,
        username: str,
        password: str,
        ssl_context: ssl.SSLContext | None = None,
        allow_basic: bool = True,
        allow_unencrypted_basic: bool = False,
        faults: EndpointFaults | None = None,
        latency: float = 0.0,
        host: str = "127.0.0.1",
        port: int = 0,
        jea: JeaMode | None = None,
    ) -> None:
        self.name = name
        self.executor = executor
        self.jea = jea  # DESIGN 12: only the SstpBot configuration, NoLanguage, functions by name
        self.username = username
        self.password = password
        self.ssl_context = ssl_context
        self.allow_basic = allow_basic
        self.allow_unencrypted_basic = allow_unencrypted_basic
        self.faults = faults or EndpointFaults()
        self.latency = latency
        self.requests: list[RequestRecord] = []
        self._requests_lock = threading.Lock()
        self._shells: dict[str, _Shell] = {}
        self._shells_lock = threading.Lock()
        self._connections = 0
        self._httpd = _Server((host, port), _make_handler(self))
        if ssl_context is not None:
            self._httpd.socket = ssl_context.wrap_socket(self._httpd.socket, server_side=True)
        self._thread: threading.Thread | None = None

    @property
    def host(self) -> str:
        return str(self._httpd.server_address[0])

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    @property
    def scheme(self) -> str:
        return "https" if self.ssl_context else "http"

    def start(self) -> WinRMEndpoint:
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, name=f"winrm-{self.name}", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self._httpd.shutdown()  # blocks until serve_forever returns: only when it runs
        self._httpd.server_close()
        with self._shells_lock:
            for shell in self._shells.values():
                with shell.lock:
                    shell.closed = True
                    shell.cond.notify_all()
            self._shells.clear()
        if self._thread:
            self._thread.join(timeout=5)

    def clear_log(self) -> None:
        with self._requests_lock:
            self.requests.clear()

    def log_request(self, record: RequestRecord) -> None:
        with self._requests_lock:
            self.requests.append(record)

    def next_connection_id(self) -> int:
        with self._requests_lock:
            self._connections += 1
            return self._connections

    @property
    def open_shells(self) -> int:
        with self._shells_lock:
            return len(self._shells)

    # --- WS-Man ---------------------------------------------------------------------------------

    def handle_wsman(self, body: bytes) -> tuple[int, bytes, str, str | None, str | None]:
        """Answer one SOAP envelope: (status, response xml, action short name, shell id, command id)."""
        try:
            envelope = ET.fromstring(body)
        except ET.ParseError:
            return 400, b"", "invalid", None, None
        header = envelope.find("s:Header", NS)
        body_el = envelope.find("s:Body", NS)
        action = _text(header, "wsa:Action")
        message_id = _text(header, "wsa:MessageID")
        resource_uri = _text(header, "wsman:ResourceURI")
        short = action
        for prefix in _ACTION_PREFIXES:
            if action.startswith(prefix):
                short = action[len(prefix) :]
        shell_id = None
        if header is not None:
            for selector in header.findall("wsman:SelectorSet/wsman:Selector", NS):
                if selector.attrib.get("Name") == "ShellId":
                    shell_id = selector.text
        timeout = _parse_duration(_text(header, "wsman:OperationTimeout")) or 20.0
        command_id: str | None = None
        try:
            if self.jea is not None:
                self.jea.check_resource_uri(resource_uri, self.name)
            elif resource_uri.lower() != POWERSHELL_URI.lower():
                raise WSManError(2150858770, f"The resource URI {resource_uri} is not supported by this lab.")
            if short == "Create":
                shell_id, response = self._create(body_el)
                action_rsp = "http://schemas.xmlsoap.org/ws/2004/09/transfer/CreateResponse"
            elif short == "Command":
                command_id, response = self._command(self._shell(shell_id), body_el)
                action_rsp = action + "Response"
            elif short == "Receive":
                max_envelope = int(_text(header, "wsman:MaxEnvelopeSize") or 153600)
                command_id, response = self._receive(self._shell(shell_id), body_el, timeout, max_envelope)
                action_rsp = action + "Response"
            elif short == "Send":
                response = self._send(self._shell(shell_id), body_el)
                action_rsp = action + "Response"
            elif short == "Signal":
                command_id, response = self._signal(self._shell(shell_id), body_el)
                action_rsp = action + "Response"
            elif short == "Delete":
                self._delete(shell_id)
                response = ""
                action_rsp = "http://schemas.xmlsoap.org/ws/2004/09/transfer/DeleteResponse"
            else:
                raise WSManError(2150858817, f"The action {action} is not supported by this lab.", "w:ActionNotSupported")
        except WSManError as err:
            return 500, self._fault(message_id, err), short, shell_id, command_id
        return 200, _envelope(action_rsp, message_id, response), short, shell_id, command_id

    def _shell(self, shell_id: str | None) -> _Shell:
        with self._shells_lock:
            shell = self._shells.get((shell_id or "").upper())
        if shell is None:
            raise WSManError(SHELL_NOT_FOUND_CODE, f"The shell {shell_id} was not found on {self.name}.")
        return shell

    def _create(self, body: ET.Element | None) -> tuple[str, str]:
        shell_el = body.find("rsp:Shell", NS) if body is not None else None
        creation = shell_el.find("pwsh:creationXml", NS) if shell_el is not None else None
        if shell_el is None or creation is None or not creation.text:
            raise WSManError(2150858882, "Create needs a PowerShell creationXml.")
        shell_id = (shell_el.attrib.get("ShellId") or str(uuid.uuid4())).upper()
        shell = _Shell(shell_id)
        with shell.lock:
            shell.pool.receive_data(PSRPPayload(base64.b64decode(creation.text), StreamType.default, None))
            self._process(shell)
        with self._shells_lock:
            self._shells[shell_id] = shell
        uri = self.jea.resource_uri if self.jea is not None else POWERSHELL_URI  # the client reuses it
        response = (
            "<x:ResourceCreated>"
            f"<a:Address>{self.scheme}://{self.host}:{self.port}/wsman</a:Address>"
            "<a:ReferenceParameters>"
            f"<w:ResourceURI>{uri}</w:ResourceURI>"
            f'<w:SelectorSet><w:Selector Name="ShellId">{shell_id}</w:Selector></w:SelectorSet>'
            "</a:ReferenceParameters></x:ResourceCreated>"
            f'<rsp:Shell><rsp:ShellId>{shell_id}</rsp:ShellId><rsp:ResourceUri>{uri}</rsp:ResourceUri>'
            f"<rsp:Owner>{escape(self.username)}</rsp:Owner><rsp:ClientIP>127.0.0.1</rsp:ClientIP>"
            "<rsp:InputStreams>stdin pr</rsp:InputStreams><rsp:OutputStreams>stdout</rsp:OutputStreams>"
            "</rsp:Shell>"
        )
        return shell_id, response

    def _command(self, shell: _Shell, body: ET.Element | None) -> tuple[str, str]:
        if self.faults.http_500:
            raise _Http500()
        if self.faults.wsman_fault:
            raise WSManError(
                2150859046,
                f"The WS-Management service on {self.name} cannot process the request: the PowerShell plug-in "
                "failed to start the command (lab fault).",
            )
        cmd = body.find("rsp:CommandLine", NS) if body is not None else None
        if cmd is None:
            raise WSManError(2150858882, "Command needs a CommandLine.")
        command_id = (cmd.attrib.get("CommandId") or str(uuid.uuid4())).upper()
        data = b"".join(base64.b64decode(a.text or "") for a in cmd.findall("rsp:Arguments", NS))
        pipeline_id = uuid.UUID(command_id)
        with shell.lock:
            # Register the pipeline before feeding its first fragment (DESIGN 10).
            shell.pipelines[pipeline_id] = psrpcore.ServerPipeline(shell.pool, pipeline_id)
            shell.outgoing.setdefault(pipeline_id, deque())
            shell.pool.receive_data(PSRPPayload(data, StreamType.default, pipeline_id))
            self._process(shell)
        return command_id, f"<rsp:CommandResponse><rsp:CommandId>{command_id}</rsp:CommandId></rsp:CommandResponse>"

    def _send(self, shell: _Shell, body: ET.Element | None) -> str:
        streams = body.findall("rsp:Send/rsp:Stream", NS) if body is not None else []
        with shell.lock:
            for stream in streams:
                cid = stream.attrib.get("CommandId")
                pipeline_id = uuid.UUID(cid) if cid else None
                data = base64.b64decode(stream.text or "")
                stream_type = StreamType.prompt_response if stream.attrib.get("Name") == "pr" else StreamType.default
                shell.pool.receive_data(PSRPPayload(data, stream_type, pipeline_id))
            self._process(shell)
        return "<rsp:SendResponse/>"

    def _receive(
        self, shell: _Shell, body: ET.Element | None, timeout: float, max_envelope: int = 153600
    ) -> tuple[str | None, str]:
        desired = body.find("rsp:Receive/rsp:DesiredStream", NS) if body is not None else None
        cid = desired.attrib.get("CommandId") if desired is not None else None
        try:
            key = uuid.UUID(cid) if cid else None
        except ValueError:
            key = uuid.UUID(int=0)
        deadline = time.monotonic() + timeout
        # Base64 grows the data by 4/3; the rest of the envelope needs room too (DOMAIN 14).
        budget = max(PAYLOAD_CHUNK, (max_envelope - ENVELOPE_OVERHEAD) * 3 // 4)
        with shell.lock:
            if key is not None and key not in shell.pipelines and key not in shell.outgoing:
                # Windows answers a Receive for a CommandId it does not know at once, not after the
                # long-poll (DOMAIN 14: s:Sender, w:InvalidSelectors, 2150858843).
                raise WSManError(
                    INVALID_SELECTORS_CODE,
                    f"The request for the Windows Remote Shell with ShellId {shell.id} failed because the "
                    f"command with CommandId {cid} was not found.",
                    "w:InvalidSelectors",
                    code_value="s:Sender",
                )
            queue = shell.outgoing.setdefault(key, deque())
            while not queue and not shell.closed:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise WSManError(
                        OPERATION_TIMEOUT_CODE,
                        "The WS-Management service cannot complete the operation within the time specified in "
                        "OperationTimeout.",
                        "w:TimedOut",
                    )
                shell.cond.wait(remaining)
            # As much as fits in the client's MaxEnvelopeSize (at least one payload); the rest waits for
            # the next Receive, as Windows splits a large output (DOMAIN 14).
            chunks: list[bytes] = []
            size = 0
            while queue and (not chunks or size + len(queue[0]) <= budget):
                chunk = queue.popleft()
                chunks.append(chunk)
                size += len(chunk)
            done = False
            if key is not None:
                pipeline = shell.pipelines.get(key)
                done = not queue and (pipeline is None or pipeline.state in (
                    PSInvocationState.Completed,
                    PSInvocationState.Failed,
                    PSInvocationState.Stopped,
                ))
        attr = f' CommandId="{cid}"' if cid else ""
        streams = "".join(
            f'<rsp:Stream Name="stdout"{attr}>{base64.b64encode(chunk).decode()}</rsp:Stream>' for chunk in chunks
        )
        state = ""
        if cid and done:
            # Windows sends CommandState only with Done, carrying the ExitCode (DOMAIN 14).
            state = (f'<rsp:CommandState CommandId="{cid}" State="{COMMAND_DONE}">'
                     "<rsp:ExitCode>0</rsp:ExitCode></rsp:CommandState>")
        return cid, f"<rsp:ReceiveResponse>{streams}{state}</rsp:ReceiveResponse>"

    def _signal(self, shell: _Shell, body: ET.Element | None) -> tuple[str | None, str]:
        signal = body.find("rsp:Signal", NS) if body is not None else None
        cid = signal.attrib.get("CommandId") if signal is not None else None
        if cid:
            with shell.lock:
                pipeline = shell.pipelines.pop(uuid.UUID(cid), None)
                if pipeline is not None and pipeline.state == PSInvocationState.Running:
                    pipeline.stop()
                    shell.flush()
                shell.outgoing.pop(uuid.UUID(cid), None)
                if pipeline is not None:
                    pipeline.close()
        return cid, "<rsp:SignalResponse/>"

    def _delete(self, shell_id: str | None) -> None:
        with self._shells_lock:
            shell = self._shells.pop((shell_id or "").upper(), None)
        if shell is None:
            raise WSManError(SHELL_NOT_FOUND_CODE, f"The shell {shell_id} was not found on {self.name}.")
        with shell.lock:
            shell.closed = True
            shell.cond.notify_all()

    def _process(self, shell: _Shell) -> None:
        """Feed received PSRP data to psrpcore and run every pipeline it creates (caller holds the lock)."""
        while (event := shell.pool.next_event()) is not None:
            if isinstance(event, psrpcore.CreatePipelineEvent):
                pipeline = shell.pipelines.get(event.pipeline_id) if event.pipeline_id else None
                if pipeline is not None:
                    self._run_pipeline(pipeline)
        shell.flush()

    def _run_pipeline(self, pipeline: psrpcore.ServerPipeline) -> None:
        pipeline.start()
        metadata = pipeline.metadata
        commands = list(getattr(metadata, "commands", []) or [])
        if self.jea is not None:
            outcome = self._run_jea(commands)
        elif len(commands) != 1 or not commands[0].is_script:
            outcome = ScriptOutcome(
                terminating=TerminatingError(
                    "This lab endpoint runs exactly one shipped script per pipeline.",
                    "UnsupportedPipeline",
                    ErrorCategory.InvalidOperation,
                )
            )
        else:
            command = commands[0]
            try:
                outcome = self.executor(command.command_text, command_params(command), local_scope=command.use_local_scope)
            except Exception as exc:  # the twin must never take the endpoint down
                outcome = self._crashed("script execution", exc)
        for value in outcome.output:
            pipeline.write_output(value)
        for message in outcome.errors:
            pipeline.write_error(
                NETException(Message=message),
                ErrorCategoryInfo(Category=ErrorCategory.NotSpecified, Reason="WriteErrorException"),
                fully_qualified_error_id="Microsoft.PowerShell.Commands.WriteErrorException",
            )
        if outcome.running:
            return
        if outcome.terminating is not None:
            _fail_pipeline(pipeline, outcome.terminating)
        else:
            pipeline.complete()

    def _run_jea(self, commands: list[Any]) -> ScriptOutcome:
        assert self.jea is not None
        try:
            return self.jea.run(commands)
        except Exception as exc:  # the twin must never take the endpoint down
            return self._crashed("JEA function", exc)

    def _crashed(self, what: str, exc: Exception) -> ScriptOutcome:
        """The runtime raised: log it with its traceback (call from the `except` block) and answer
        the pipeline with a terminating error instead."""
        log.exception("lab server %s: %s crashed", self.name, what)
        return ScriptOutcome(terminating=TerminatingError(f"lab runtime error: {exc}", "LabRuntimeError"))

    def _fault(self, message_id: str, err: WSManError) -> bytes:
        body = (
            f"<s:Fault><s:Code><s:Value>{err.code_value}</s:Value>"
            f"<s:Subcode><s:Value>{err.subcode}</s:Value></s:Subcode></s:Code>"
            f'<s:Reason><s:Text xml:lang="en-US">{escape(err.reason)}</s:Text></s:Reason>'
            f'<s:Detail><f:WSManFault Code="{err.code}" Machine="{escape(self.name)}">'
            f"<f:Message>{escape(err.reason)}</f:Message></f:WSManFault></s:Detail></s:Fault>"
        )
        return _envelope("http://schemas.dmtf.org/wbem/wsman/1/wsman/fault", message_id, body)


class _Http500(Exception):
    """Injected fault: answer HTTP 500 with a body that is not a WS-Man fault."""


class _Server(ThreadingHTTPServer):
    """The endpoint's HTTP server; its serve loop sleeps until a connection or `shutdown` arrives.

    socketserver's loop wakes every poll_interval to look for a shutdown request: with a hundred lab
    servers that was 500 idle wake-ups a second. This one also watches a socket pair that `shutdown`
    writes to, so it needs no polling (and stops at once). Same contract as socketserver's: `shutdown`
    blocks until the loop has returned and must only be called while it runs or is about to."""

    daemon_threads = True
    request_queue_size = 256

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._wake_r, self._wake_w = socket.socketpair()
        self._shutdown_request = False
        self._is_shut_down = threading.Event()
        try:
            super().__init__(*args, **kwargs)
        except BaseException:
            self._close_wake()
            raise

    def serve_forever(self, poll_interval: float | None = None) -> None:
        self._is_shut_down.clear()
        try:
            with selectors.DefaultSelector() as selector:
                selector.register(self, selectors.EVENT_READ)
                selector.register(self._wake_r, selectors.EVENT_READ)
                while not self._shutdown_request:
                    ready = selector.select(poll_interval)
                    if self._shutdown_request:
                        break
                    for key, _ in ready:
                        if key.fileobj is self:
                            self._handle_request_noblock()  # type: ignore[attr-defined]  # socketserver's own step
                        else:  # a wake-up byte of a shutdown this loop did not see: drop it
                            with contextlib.suppress(OSError):
                                self._wake_r.recv(64)
                    self.service_actions()
        finally:
            self._shutdown_request = False
            self._is_shut_down.set()

    def shutdown(self) -> None:
        self._shutdown_request = True
        with contextlib.suppress(OSError):
            self._wake_w.send(b"x")
        self._is_shut_down.wait()

    def server_close(self) -> None:
        super().server_close()
        self._close_wake()

    def _close_wake(self) -> None:
        for sock in (self._wake_r, self._wake_w):
            with contextlib.suppress(OSError):
                sock.close()

    def handle_error(self, request: Any, client_address: Any) -> None:  # quiet: clients drop connections
        log.debug("lab endpoint: connection error from %s", client_address, exc_info=True)


def _make_handler(endpoint: WinRMEndpoint) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "Microsoft-HTTPAPI/2.0"
        sys_version = ""

        def setup(self) -> None:
            super().setup()
            # http.server writes headers and body separately: without TCP_NODELAY, Nagle plus the
            # client's delayed ACK add ~40 ms per request (DESIGN 10).
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.connection_id = endpoint.next_connection_id()
            self.auth_context: Any = None
            self.authenticated = False
            self.encryption: WinRMEncryption | None = None

        def log_message(self, format: str, *args: Any) -> None:
            log.debug("lab %s: " + format, endpoint.name, *args)

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            if endpoint.latency:
                time.sleep(endpoint.latency)  # emulated network round trip: every request pays it
            if self.path.rstrip("/").lower() != "/wsman":
                self._reply(404, b"", "not-found")
                return
            token_out: bytes | None = None
            authorization = self.headers.get("Authorization", "")
            scheme, _, value = authorization.partition(" ")
            scheme = scheme.lower()
            basic_ok = False
            if scheme == "basic":
                if not endpoint.allow_basic or (endpoint.ssl_context is None and not endpoint.allow_unencrypted_basic):
                    self._challenge(None)
                    return
                try:
                    user, _, password = base64.b64decode(value).decode("utf-8").partition(":")
                except (binascii.Error, UnicodeDecodeError):
                    self._challenge(None)
                    return
                if user.lower() != endpoint.username.lower() or password != endpoint.password:
                    self._challenge(None)
                    return
                basic_ok = True
            elif scheme in ("negotiate", "kerberos", "ntlm") and value:
                try:
                    token_in = base64.b64decode(value)
                    if self.auth_context is None or self.authenticated:
                        self.auth_context = spnego.server(protocol="negotiate")
                        self.authenticated = False
                        self.encryption = None
                    token_out = self.auth_context.step(token_in)
                except (spnego.exceptions.SpnegoError, binascii.Error, ValueError):
                    self.auth_context = None
                    self.authenticated = False
                    self._challenge(None)
                    return
                if not self.auth_context.complete:
                    self._challenge(token_out)
                    return
                self.authenticated = True
                self.encryption = WinRMEncryption(self.auth_context, ENCRYPTED_PROTOCOL)
            if not (basic_ok or self.authenticated):
                self._challenge(None)
                return
            if not body:
                # The empty POST that completes the handshake before encrypted messages flow.
                self._reply(200, b"", "auth", auth_token=token_out)
                return
            content_type = self.headers.get("Content-Type", "")
            encrypted = content_type.startswith("multipart/encrypted")
            if encrypted:
                if self.encryption is None:
                    self._reply(400, b"", "invalid")
                    return
                match = re.search(r'boundary="([^"]*)"', content_type)
                try:
                    body = self.encryption.unwrap_message(body, match.group(1) if match else BOUNDARY)
                except Exception:
                    log.debug("lab %s: cannot decrypt a message", endpoint.name, exc_info=True)
                    self._reply(400, b"", "invalid")
                    return
            elif endpoint.ssl_context is None and not basic_ok:
                # Like WinRM's AllowUnencrypted=false: plain HTTP must be message-encrypted.
                self._reply(401, b"", "unencrypted")
                return
            if endpoint.faults.delay:
                time.sleep(endpoint.faults.delay)
            try:
                status, response, action, shell_id, command_id = endpoint.handle_wsman(body)
            except _Http500:
                self._reply(500, b"Internal Server Error (lab fault)", "Command", content_type="text/plain")
                return
            self._reply(status, response, action, shell_id, command_id, encrypt=encrypted, auth_token=token_out)

        def _challenge(self, token: bytes | None) -> None:
            headers = []
            if token:
                headers.append(("WWW-Authenticate", "Negotiate " + base64.b64encode(token).decode()))
            else:
                headers.append(("WWW-Authenticate", "Negotiate"))
                if endpoint.allow_basic and (endpoint.ssl_context is not None or endpoint.allow_unencrypted_basic):
                    headers.append(("WWW-Authenticate", 'Basic realm="WSMAN"'))
            self._reply(401, b"", "auth", extra_headers=headers)

        def _reply(
            self,
            status: int,
            body: bytes,
            action: str,
            shell_id: str | None = None,
            command_id: str | None = None,
            *,
            encrypt: bool = False,
            auth_token: bytes | None = None,
            content_type: str = "application/soap+xml;charset=UTF-8",
            extra_headers: list[tuple[str, str]] | None = None,
        ) -> None:
            endpoint.log_request(
                RequestRecord(time.time(), action, status, shell_id, command_id, self.connection_id)
            )
            self.send_response(status)
            if encrypt and body and self.encryption is not None:
                ctype, body = self.encryption.wrap_message(body)
                content_type = f'{ctype};protocol="{ENCRYPTED_PROTOCOL}";boundary="{BOUNDARY}"'
            if body:
                self.send_header("Content-Type", content_type)
            if auth_token:
                self.send_header("WWW-Authenticate", "Negotiate " + base64.b64encode(auth_token).decode())
            for key, value in extra_headers or []:
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if body and endpoint.faults.trickle and action != "auth":
                # A server that answers one byte at a time: each read gets data in time, so only a
                # wall-clock deadline per exchange ends the wait (issue 14).
                try:
                    for i in range(len(body)):
                        self.wfile.write(body[i : i + 1])
                        self.wfile.flush()
                        time.sleep(endpoint.faults.trickle)
                except OSError:
                    self.close_connection = True
                return
            if body:
                self.wfile.write(body)

    return Handler


def _text(parent: ET.Element | None, path: str) -> str:
    if parent is None:
        return ""
    el = parent.find(path, NS)
    return (el.text or "").strip() if el is not None else ""


def _parse_duration(value: str) -> float | None:
    m = re.fullmatch(r"PT(?:(\d+(?:\.\d+)?)M)?(?:(\d+(?:\.\d+)?)S)?", value or "")
    if not m or not (m.group(1) or m.group(2)):
        return None
    return float(m.group(1) or 0) * 60 + float(m.group(2) or 0)


def _envelope(action: str, relates_to: str, body: str) -> bytes:
    return (
        f'<s:Envelope xmlns:s="{NS["s"]}" xmlns:a="{NS["wsa"]}" xmlns:w="{NS["wsman"]}" '
        f'xmlns:x="{NS["wst"]}" xmlns:rsp="{NS["rsp"]}" xmlns:f="{NS["f"]}" '
        'xmlns:xml="http://www.w3.org/XML/1998/namespace">'
        f"<s:Header><a:Action>{action}</a:Action><a:MessageID>uuid:{str(uuid.uuid4()).upper()}</a:MessageID>"
        "<a:To>http://schemas.xmlsoap.org/ws/2004/08/addressing/role/anonymous</a:To>"
        f"<a:RelatesTo>{escape(relates_to)}</a:RelatesTo></s:Header><s:Body>{body}</s:Body></s:Envelope>"
    ).encode()
