"""probe.ps1 collects snapshot v1 exactly as DESIGN 3 describes, from structured sources, read-only."""

from __future__ import annotations

import re

from tests.scripts.pwsh_ast import command_names, parse, script_source, text, walk

SOURCE = script_source("probe")
CODE = "\n".join(line.split(" # ")[0] for line in SOURCE.splitlines() if not line.lstrip().startswith("#"))
TREE = parse(SOURCE)

TOP_LEVEL_KEYS = [
    "schema",
    "collected_at",
    "host",
    "services",
    "sstp",
    "http_sys",
    "iis",
    "listeners",
    "certificates",
    "vpn_connections",
    "events",
    "events_omitted",
    "endpoint",
    "probe_errors",
]
NESTED_KEYS = {
    "host": ["computer_name", "os_caption", "os_build", "ps_version", "is_admin"],
    "services": ["RemoteAccess", "SstpSvc", "W3SVC", "WAS"],
    "service": ["status", "start_type", "started_at"],
    "sstp": [
        "sha256_hash",
        "sha1_hash",
        "use_https",
        "is_hash_configured_by_admin",
        "listener_port",
        "remote_access",
    ],
    "remote_access": ["vpn_status", "thumbprint", "directaccess"],
    "http_sys": ["ip_bindings", "sni_bindings", "url_reservations", "ccs_bindings", "registered_urls"],
    "endpoint": ["configuration_name", "module_version", "language_mode"],
    "binding": ["endpoint", "cert_hash", "app_id", "store", "ctl_store"],
    "url_reservation": ["url", "sddl"],
    "iis": ["installed", "https_bindings"],
    "iis_binding": ["site", "binding_information", "cert_hash", "ssl_flags"],
    "listener": ["local_address", "port", "pid", "process"],
    "certificate": ["thumbprint", "has_private_key", "private_key_usable", "friendly_name", "der"],
    "event": ["provider", "id", "time", "message"],
    "probe_error": ["section", "message"],
}


def _hash_literals() -> list[list[str]]:
    """The keys of every hash literal in the probe, in source order."""
    literals = []
    for node in walk(TREE.root_node):
        if node.type == "hash_literal_expression":
            body = next((c for c in node.children if c.type == "hash_literal_body"), None)
            entries = [] if body is None else [c for c in body.children if c.type == "hash_entry"]
            literals.append([text(e.children[0]) for e in entries])
    return literals


def test_snapshot_top_level_keys_in_order() -> None:
    assert TOP_LEVEL_KEYS in _hash_literals()


def test_schema_string() -> None:
    assert "schema          = 'sstp-bot/snapshot/v1'" in SOURCE


def test_every_nested_object_is_built_with_all_its_keys() -> None:
    literals = _hash_literals()
    for section, keys in NESTED_KEYS.items():
        assert keys in literals, section


def test_reads_the_documented_registry_values() -> None:
    for needle in [
        r"SYSTEM\CurrentControlSet\Services\SstpSvc\Parameters",
        r"SYSTEM\CurrentControlSet\Services\HTTP\Parameters",
        "'SHA256CertificateHash'",
        "'SHA1CertificateHash'",
        "'UseHttps'",
        "'IsHashConfiguredByAdmin'",
        "'ListenerPort'",
        "'SslBindingInfo'",
        "'SslSniBindingInfo'",
        "'\\UrlAclInfo'",
        "'SslCertHash'",
        "'AppId'",
        "'SslCertStoreName'",
        "'DefaultSslCtlStoreName'",
        r"System32\inetsrv\config\applicationHost.config",
        "Cert:\\LocalMachine\\My",
    ]:
        assert needle in SOURCE, needle


def test_uses_the_structured_cmdlets() -> None:
    used = set(command_names(TREE))
    assert {
        "get-remoteaccess",
        "get-nettcpconnection",
        "get-process",
        "get-childitem",
        "get-service",
        "get-remoteaccessconnectionstatisticssummary",
        "get-winevent",
        "get-ciminstance",
    } <= used
    # DOMAIN 14: the per-connection list is slow on a busy server; the summary counts users.
    assert "get-remoteaccessconnectionstatistics" not in used


def test_events_are_capped_per_query_and_the_rest_counted() -> None:
    """DOMAIN 14: thousands of Schannel 36870 events must not time the probe out or pass 10 MB."""
    assert "[int]$MaxEvents = 100" in SOURCE
    assert "Get-WinEvent -FilterHashtable $filter -MaxEvents $Limit -ErrorAction Stop" in SOURCE
    assert "$records = Get-SstpEvents $query.Providers $query.Ids $since $MaxEvents" in SOURCE
    assert "$eventsOmitted += $total - $records.Count" in SOURCE


def test_private_key_is_opened_not_trusted_from_has_private_key() -> None:
    """DOMAIN 14: HasPrivateKey reads true for a deleted or inaccessible key; opening it tells."""
    assert "RSACertificateExtensions]::GetRSAPrivateKey($Certificate)" in SOURCE
    assert "ECDsaCertificateExtensions]::GetECDsaPrivateKey($Certificate)" in SOURCE
    assert "private_key_usable = Test-PrivateKeyUsable $certificate" in SOURCE


def test_registered_urls_directaccess_ccs_and_endpoint_are_read() -> None:
    assert "$httpSys.registered_urls = Get-RegisteredUrls $sstpPort" in SOURCE
    assert "('http', 'show', 'servicestate', 'view=requestq')" in SOURCE
    assert "Get-PropertyValue $remoteAccess 'DAStatus'" in SOURCE
    assert "Read-SslBindings 'SslCcsBindingInfo'" in SOURCE
    assert "Get-Variable -Name PSSenderInfo -ValueOnly" in SOURCE


def test_event_sources() -> None:
    assert "'Microsoft-Windows-RasSstp', 'RasSstp'" in SOURCE  # TechNet name, then RH's fallback
    assert "@(8, 9, 12, 13, 18, 21)" in SOURCE
    assert "'Schannel'" in SOURCE and "@(36870)" in SOURCE
    assert "-FilterHashtable" in SOURCE and "LogName = 'System'" in SOURCE


def test_formats() -> None:
    assert "$IsoFormat = \"yyyy'-'MM'-'dd'T'HH':'mm':'ss'Z'\"" in SOURCE
    assert "[System.BitConverter]::ToString($Value).Replace('-', '')" in SOURCE  # upper hex, no separators
    assert "ToString('B').ToLowerInvariant()" in SOURCE  # {xxxxxxxx-...} GUIDs
    assert "GetSddlForm([System.Security.AccessControl.AccessControlSections]::All)" in SOURCE


def test_changes_nothing() -> None:
    used = set(command_names(TREE))
    writers = {n for n in used if re.match(r"(set|remove|new|restart|stop|start|clear|rename|move)-", n)}
    assert writers == {"set-strictmode"}
    assert not used & {"netsh", "appcmd", "iisreset", "start-service"}
    for forbidden in (".SetValue(", ".DeleteValue(", ".DeleteSubKey", ".CreateSubKey("):
        assert forbidden not in CODE, forbidden
    # The one native command the probe runs is netsh's read-only servicestate view (DOMAIN 14).
    native = re.findall(r"Invoke-NativeCommand \$\w+ (\(\[string\[\]\]@\([^)]*\)\))", CODE)
    assert native == ["([string[]]@('http', 'show', 'servicestate', 'view=requestq'))"], native
    for call in re.findall(r"OpenSubKey\(([^)]*)\)", CODE):
        assert call.endswith("$false"), call


def test_every_section_records_probe_errors() -> None:
    sections = set(re.findall(r"Add-ProbeError '(\w+)'", SOURCE))
    assert {
        "host",
        "services",
        "sstp",
        "remote_access",
        "http_sys",
        "iis",
        "listeners",
        "certificates",
        "vpn_connections",
        "events",
    } <= sections


def _function_source(name: str) -> str:
    for node in walk(TREE.root_node):
        if node.type == "function_statement" and any(text(c).lower() == name.lower() for c in node.children):
            return text(node)
    raise AssertionError(f"function {name} not found")


def test_service_started_at_comes_from_the_hosting_process() -> None:
    # Optional snapshot key services.<name>.started_at: Win32_Service.ProcessId -> Get-Process StartTime,
    # as UTC ISO text; best effort (null on any failure, never a probe error).
    body = _function_source("Get-ServiceStartTime")
    assert "Get-CimInstance -ClassName Win32_Service" in body
    assert ".ProcessId" in body and "Get-Process -Id $processId" in body and ".StartTime" in body
    assert "ConvertTo-IsoTime $started" in body  # ToUniversalTime + the invariant ISO format
    assert "-le 0" in body  # a stopped service has ProcessId 0
    assert "Add-ProbeError" not in body
    assert re.search(r"catch\s*\{\s*return \$null\s*\}", body)
    code = "\n".join(line for line in body.splitlines() if not line.lstrip().startswith("#"))
    assert not re.search(r"\$pid\b", code, re.IGNORECASE)  # $PID is read-only (PowerShell's own process)
    assert "started_at = Get-ServiceStartTime $Name" in _function_source("Get-ServiceState")
    assert "lower bound" in body.lower()  # the shared-svchost caveat stays documented


# Lists the diagnosis reads as "known" when they are a list: [] there means "read, none found" (no
# binding -> HTTPSYS_BINDING_MISSING and a rebind; no listener -> SSTP_NOT_LISTENING and a restart), so a
# section the probe could not read must be null (DESIGN 3: absent data is null).
LIST_SECTIONS = {
    "$httpSys.ip_bindings": "Read-SslBindings 'SslBindingInfo'",
    "$httpSys.sni_bindings": "Read-SslBindings 'SslSniBindingInfo'",
    "$httpSys.url_reservations": "UrlAclInfo",
    "$iis.https_bindings": "applicationHost.config",
    "$listeners": "Get-NetTCPConnection",
    "$certificates": "Cert:\\LocalMachine\\My",
}


def _top_level_try_statements() -> list:
    body = next(c for c in TREE.root_node.children if c.type == "statement_list")
    return [n for n in walk(body) if n.type == "try_statement" and not _inside_function(n)]


def _inside_function(node) -> bool:
    parent = node.parent
    while parent is not None:
        if parent.type == "function_statement":
            return True
        parent = parent.parent
    return False


def test_an_unreadable_list_section_is_null_not_empty() -> None:
    for variable, source in LIST_SECTIONS.items():
        tries = [t for t in _top_level_try_statements() if source in text(t).split("catch", 1)[0]]
        assert tries, (variable, source)
        for statement in tries:
            catches = [c for c in walk(statement) if c.type == "catch_clause" and c.parent.parent == statement]
            assert catches, variable
            for catch in catches:
                assert re.search(re.escape(variable) + r" = \$null", text(catch)), (variable, text(catch))


def test_listener_query_errors_and_missing_iis_config_also_give_null() -> None:
    assert "if ($tcpFailed) { $listeners = $null }" in SOURCE
    assert re.search(r"-not \$configFound\) \{\s*\$iis\.https_bindings = \$null", SOURCE)
    assert "if ($eventFailures -eq $eventQueries.Count) { $events = $null }" in SOURCE


def test_the_endpoint_reports_its_module_version_and_language_mode() -> None:
    # DESIGN 12: on the JEA endpoint the probe is the body of Invoke-SstpBotProbe, and `module_version`
    # comes from the module that function belongs to; a null here would make every check of a JEA
    # server ENDPOINT_OUTDATED and refuse every fix. DOMAIN 14 names the language mode's source.
    section = CODE[CODE.index("$endpointInfo = $null"):CODE.index("Add-ProbeError 'endpoint'")]
    assert "$module = Get-PropertyValue $MyInvocation.MyCommand 'Module'" in section
    assert "$moduleVersion = [string](Get-PropertyValue $module 'Version')" in section
    assert re.search(r"module_version\s*=\s*\$moduleVersion\b", section)
    assert re.search(r"language_mode\s*=\s*\[string\]\$ExecutionContext\.SessionState\.LanguageMode\b", section)
    assert not re.search(r"(module_version|language_mode)\s*=\s*\$null", section)
