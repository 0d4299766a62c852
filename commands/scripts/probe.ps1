# sstp-bot-script: probe
#
# Collects snapshot v1 (DESIGN.md section 3) from an RRAS server and changes nothing.
# Reads structured sources only (registry, CIM, cmdlets, applicationHost.config as XML); never parses
# localised netsh text (DOMAIN 2.2). Every section is wrapped in try/catch: a section that cannot be
# read is null (never an empty list: [] means "read, and there is none", null means "unknown",
# DESIGN 3) and adds {section, message} to probe_errors.
# Writes exactly one JSON document (ConvertTo-Json -Depth 8 -Compress) to the output stream.
# Target: Windows PowerShell 5.1 (the default PSRP endpoint, DOMAIN 11).
[CmdletBinding()]
param(
    [ValidateRange(1, 720)]
    [int]$EventHours = 24,

    # DOMAIN 14: a broken key produces thousands of Schannel 36870 events; each query is capped.
    [ValidateRange(1, 5000)]
    [int]$MaxEvents = 100
)

Set-StrictMode -Version 2
$ErrorActionPreference = 'Stop'
$ProgressPreference = 'SilentlyContinue'

# sstp-bot-include: fix_common
# sstp-bot-include: httpsys

$SstpParametersKey = 'SYSTEM\CurrentControlSet\Services\SstpSvc\Parameters'   # DOMAIN 1.1
$HttpParametersKey = 'SYSTEM\CurrentControlSet\Services\HTTP\Parameters'      # DOMAIN 2.1, 13
$Invariant = [System.Globalization.CultureInfo]::InvariantCulture
$IsoFormat = "yyyy'-'MM'-'dd'T'HH':'mm':'ss'Z'"

$probeErrors = [System.Collections.Generic.List[object]]::new()

function Add-ProbeError([string]$Section, $Problem) {
    $message = $null
    if ($Problem -is [System.Management.Automation.ErrorRecord]) {
        $message = $Problem.Exception.Message
    } elseif ($Problem -is [System.Exception]) {
        $message = $Problem.Message
    } else {
        $message = [string]$Problem
    }
    $probeErrors.Add([ordered]@{ section = $Section; message = $message })
}

function ConvertTo-Hex($Value) {
    # REG_BINARY / byte[] -> upper-case hex without separators; anything else -> $null.
    if ($null -eq $Value) { return $null }
    if ($Value -isnot [byte[]]) { return $null }
    if ($Value.Length -eq 0) { return $null }
    return [System.BitConverter]::ToString($Value).Replace('-', '')
}

function ConvertTo-IsoTime($Time) {
    if ($null -eq $Time) { return $null }
    return ([datetime]$Time).ToUniversalTime().ToString($IsoFormat, $Invariant)
}

function ConvertTo-Bool($Value) {
    if ($null -eq $Value) { return $null }
    return ([int64]$Value -ne 0)
}

function Get-PropertyValue($InputObject, [string]$Name) {
    # Strict mode throws on a missing property; this returns $null instead.
    if ($null -eq $InputObject) { return $null }
    $property = $InputObject.PSObject.Properties[$Name]
    if ($null -eq $property) { return $null }
    # The unary comma keeps a byte[] value (SslCertificate in PowerShell 7) from being unrolled.
    return ,$property.Value
}

function Open-LocalMachineKey([string]$Path) {
    # Read-only .NET access: no registry-provider wildcard expansion on names such as '*:443'.
    return [Microsoft.Win32.Registry]::LocalMachine.OpenSubKey($Path, $false)
}

function Get-EndpointPort([string]$Endpoint) {
    # '0.0.0.0:443', '[::]:443', 'vpn.example.com:443' -> 443; $null when there is no numeric port.
    $index = $Endpoint.LastIndexOf(':')
    if ($index -lt 0) { return $null }
    $port = 0
    if ([int]::TryParse($Endpoint.Substring($index + 1), [ref]$port)) { return $port }
    return $null
}

function ConvertTo-GuidString($Value) {
    # HTTP.sys stores AppId as a 16-byte GUID (DOMAIN 2.1, 13): '{xxxxxxxx-...}' lower case.
    if ($null -eq $Value) { return $null }
    if ($Value -is [byte[]]) {
        if ($Value.Length -ne 16) { return $null }
        return ([guid]::new([byte[]]$Value)).ToString('B').ToLowerInvariant()
    }
    $parsed = [guid]::Empty
    if ([guid]::TryParse([string]$Value, [ref]$parsed)) { return $parsed.ToString('B').ToLowerInvariant() }
    return $null
}

function Get-StringValue($Key, [string]$Name) {
    $value = $Key.GetValue($Name, $null)
    if ($null -eq $value) { return $null }
    $text = [string]$value
    if ($text.Length -eq 0) { return $null }
    return $text
}

function Read-SslBindings([string]$SubKey, [string]$Section) {
    # One entry per HTTP.sys binding key (SslBindingInfo\<ip:port> or SslSniBindingInfo\<host:port>).
    $bindings = [System.Collections.Generic.List[object]]::new()
    $parent = Open-LocalMachineKey ($HttpParametersKey + '\' + $SubKey)
    if ($null -eq $parent) { return ,$bindings }
    try {
        foreach ($name in $parent.GetSubKeyNames()) {
            try {
                $key = $parent.OpenSubKey($name, $false)
                if ($null -eq $key) { continue }
                try {
                    $bindings.Add([ordered]@{
                        endpoint  = $name
                        cert_hash = ConvertTo-Hex ($key.GetValue('SslCertHash', $null))
                        app_id    = ConvertTo-GuidString ($key.GetValue('AppId', $null))
                        store     = Get-StringValue $key 'SslCertStoreName'
                        ctl_store = Get-StringValue $key 'DefaultSslCtlStoreName'
                    })
                } finally {
                    $key.Close()
                }
            } catch {
                Add-ProbeError $Section ("{0}: {1}" -f $name, $_.Exception.Message)
            }
        }
    } finally {
        $parent.Close()
    }
    return ,$bindings
}

function Get-UrlPort([string]$Url) {
    # 'https://+:443/sra_{...}/' -> 443; no explicit port -> the scheme's default.
    $match = [regex]::Match($Url, '^(?<scheme>https?)://(?<host>\[[^\]]*\]|[^/:]*)(:(?<port>[0-9]+))?(/|$)', 'IgnoreCase')
    if (-not $match.Success) { return $null }
    if ($match.Groups['port'].Success) { return [int]$match.Groups['port'].Value }
    if ($match.Groups['scheme'].Value -eq 'https') { return 443 }
    return 80
}

function Get-ServiceState([string]$Name) {
    $service = Get-Service -Name $Name -ErrorAction SilentlyContinue
    if ($null -eq $service) { return $null }
    $startType = $null
    try {
        $startType = $service.StartType.ToString()
    } catch {
        # ServiceController.StartType needs .NET 4.6.1; fall back to Win32_Service.StartMode.
        $cim = Get-CimInstance -ClassName Win32_Service -Filter ("Name='{0}'" -f $Name) -ErrorAction SilentlyContinue
        if ($null -ne $cim) {
            $startType = [string]$cim.StartMode
            if ($startType -eq 'Auto') { $startType = 'Automatic' }
        }
    }
    return [ordered]@{
        status     = $service.Status.ToString()
        start_type = $startType
        started_at = Get-ServiceStartTime $Name
    }
}

function Get-ServiceStartTime([string]$Name) {
    # Optional started_at (UTC) so diagnosis can ignore events of the previous run (DOMAIN 7, 9: "no new
    # RasSstp events since the restart"). Windows keeps no service start time; this is the start time of
    # the process hosting the service (Win32_Service.ProcessId, 0 while stopped). When the service
    # shares its svchost.exe with other services (older builds, or svchost splitting disabled), the
    # process can be older than the service's last (re)start, so the value is a LOWER bound of the
    # service start: events between the two are still counted (today's behaviour), newer ones are never
    # hidden. Best effort: any failure (access denied on the process, CIM unavailable) gives $null and
    # is not a probe error. ($PID is PowerShell's own process id, hence $processId.)
    try {
        $cim = Get-CimInstance -ClassName Win32_Service -Filter ("Name='{0}'" -f $Name) -ErrorAction Stop
        if ($null -eq $cim) { return $null }
        $processId = [int]$cim.ProcessId
        if ($processId -le 0) { return $null }
        $process = Get-Process -Id $processId -ErrorAction Stop
        $started = $process.StartTime
        if ($null -eq $started) { return $null }
        return ConvertTo-IsoTime $started
    } catch {
        return $null
    }
}

function Get-SstpEvents([string[]]$ProviderNames, [int[]]$Ids, [datetime]$Since, [int]$Limit) {
    # DOMAIN 7: TechNet names the provider 'Microsoft-Windows-RasSstp', RH writes 'RasSstp' [M]: query
    # every name, merge by RecordId. 'No events found' is an empty result; fail only when no name works.
    # DOMAIN 14: at most $Limit events per name (Get-WinEvent returns the newest first).
    $found = [System.Collections.Generic.List[object]]::new()
    $seen = @{}
    $failures = 0
    $lastError = $null
    foreach ($provider in $ProviderNames) {
        $filter = @{ LogName = 'System'; ProviderName = $provider; Id = $Ids; StartTime = $Since }
        try {
            foreach ($record in @(Get-WinEvent -FilterHashtable $filter -MaxEvents $Limit -ErrorAction Stop)) {
                $recordKey = [string]$record.RecordId
                if ($seen.ContainsKey($recordKey)) { continue }
                $seen[$recordKey] = $true
                $found.Add($record)
            }
        } catch {
            if ($_.FullyQualifiedErrorId -like 'NoMatchingEventsFound*') { continue }
            $failures += 1
            $lastError = $_
        }
    }
    if ($failures -eq $ProviderNames.Count -and $null -ne $lastError) { throw $lastError }
    return ,$found
}

function Measure-SstpEvents([string[]]$ProviderNames, [int[]]$Ids, [datetime]$Since) {
    # How many events match in all (at most 100000 per name): only run when a query hit its cap. The
    # records are counted, never formatted (EventLogRecord.Message is computed on demand).
    # A name that fails here failed in Get-SstpEvents too (DOMAIN 7: one of the two provider names may
    # not exist [M]) and contributed no record: skip it like Get-SstpEvents does, so a capped query
    # never loses the events it did read.
    # Counted by RecordId, as Get-SstpEvents merges them, so two names of one provider count once.
    $seen = @{}
    foreach ($provider in $ProviderNames) {
        $filter = @{ LogName = 'System'; ProviderName = $provider; Id = $Ids; StartTime = $Since }
        try {
            # Streamed, not collected with @(): up to 100000 records are never held in memory at once.
            Get-WinEvent -FilterHashtable $filter -MaxEvents 100000 -ErrorAction Stop | ForEach-Object { $seen[[string]$_.RecordId] = $true }
        } catch {
            continue
        }
    }
    return $seen.Count
}

function Test-PrivateKeyUsable($Certificate) {
    # DOMAIN 14: HasPrivateKey only says key-provider information exists; a deleted key or one whose ACL
    # denies access still reads true. Opening the key tells: $true opened, $false failed, $null when
    # neither RSA nor ECDSA applies (the extension methods need .NET Framework 4.6.1).
    if (-not $Certificate.HasPrivateKey) { return $false }
    try {
        $key = [System.Security.Cryptography.X509Certificates.RSACertificateExtensions]::GetRSAPrivateKey($Certificate)
        if ($null -eq $key) {
            $key = [System.Security.Cryptography.X509Certificates.ECDsaCertificateExtensions]::GetECDsaPrivateKey($Certificate)
        }
        if ($null -eq $key) { return $null }
        $key.Dispose()
        return $true
    } catch {
        # 'Unable to find type' (older .NET) is "cannot tell"; anything else (keyset does not exist,
        # access denied) means SSTP cannot use the key either.
        if ($_.FullyQualifiedErrorId -eq 'TypeNotFound') { return $null }
        return $false
    }
}

# ---------------------------------------------------------------- host
$hostInfo = [ordered]@{ computer_name = $env:COMPUTERNAME; os_caption = $null; os_build = $null; ps_version = $null; is_admin = $null }
try {
    $hostInfo.ps_version = $PSVersionTable.PSVersion.ToString()
    # DOMAIN 9: elevation check; a UAC-filtered local account is not in the Administrators role.
    $principal = [Security.Principal.WindowsPrincipal][Security.Principal.WindowsIdentity]::GetCurrent()
    $hostInfo.is_admin = $principal.IsInRole([Security.Principal.WindowsBuiltInRole]::Administrator)
    $os = Get-CimInstance -ClassName Win32_OperatingSystem -ErrorAction Stop
    $hostInfo.os_caption = [string]$os.Caption
    $hostInfo.os_build = [string]$os.BuildNumber
} catch {
    Add-ProbeError 'host' $_
}

# ---------------------------------------------------------------- endpoint (DESIGN 3 [2], 12)
# $PSSenderInfo.ConfigurationName names the endpoint a remote client connected to, and
# $ExecutionContext.SessionState.LanguageMode the session's language mode (DOMAIN 14, JEA). The
# default endpoint is reported as null. On the JEA endpoint this text is the body of the module
# function Invoke-SstpBotProbe (DESIGN 12): $MyInvocation.MyCommand is that FunctionInfo, and its
# Module (a PSModuleInfo) is SstpBot, whose Version is the installed ModuleVersion. Run as a script,
# the command (a ScriptInfo) has no module: module_version stays null.
$endpointInfo = $null
try {
    $senderInfo = Get-Variable -Name PSSenderInfo -ValueOnly -ErrorAction SilentlyContinue
    $configurationName = $null
    if ($null -ne $senderInfo) { $configurationName = [string](Get-PropertyValue $senderInfo 'ConfigurationName') }
    if (-not [string]::IsNullOrEmpty($configurationName) -and $configurationName -ne 'Microsoft.PowerShell') {
        $moduleVersion = $null
        $module = Get-PropertyValue $MyInvocation.MyCommand 'Module'
        if ($null -ne $module) { $moduleVersion = [string](Get-PropertyValue $module 'Version') }
        if ([string]::IsNullOrEmpty($moduleVersion)) { $moduleVersion = $null }
        $endpointInfo = [ordered]@{
            configuration_name = $configurationName
            module_version     = $moduleVersion
            language_mode      = [string]$ExecutionContext.SessionState.LanguageMode
        }
    }
} catch {
    Add-ProbeError 'endpoint' $_
}

# ---------------------------------------------------------------- services
$services = [ordered]@{ RemoteAccess = $null; SstpSvc = $null; W3SVC = $null; WAS = $null }
foreach ($serviceName in @('RemoteAccess', 'SstpSvc', 'W3SVC', 'WAS')) {
    try {
        $services[$serviceName] = Get-ServiceState $serviceName
    } catch {
        Add-ProbeError 'services' ("{0}: {1}" -f $serviceName, $_.Exception.Message)
    }
}

# ---------------------------------------------------------------- sstp (registry, DOMAIN 1.1)
$sstp = [ordered]@{
    sha256_hash                 = $null
    sha1_hash                   = $null
    use_https                   = $null
    is_hash_configured_by_admin = $null
    listener_port               = $null
    remote_access               = [ordered]@{ vpn_status = $null; thumbprint = $null; directaccess = $null }
}
try {
    $key = Open-LocalMachineKey $SstpParametersKey
    if ($null -eq $key) {
        Add-ProbeError 'sstp' ('registry key HKLM\{0} not found' -f $SstpParametersKey)
    } else {
        try {
            # TN-EVT-18: SHA256CertificateHash must be REG_BINARY, 32 bytes.
            $sha256 = $key.GetValue('SHA256CertificateHash', $null)
            $sstp.sha256_hash = ConvertTo-Hex $sha256
            if ($null -ne $sha256 -and $sha256 -isnot [byte[]]) {
                Add-ProbeError 'sstp' 'SHA256CertificateHash is not REG_BINARY (TN-EVT-18)'
            }
            $sstp.sha1_hash = ConvertTo-Hex ($key.GetValue('SHA1CertificateHash', $null))
            $sstp.use_https = ConvertTo-Bool ($key.GetValue('UseHttps', $null))
            $sstp.is_hash_configured_by_admin = ConvertTo-Bool ($key.GetValue('IsHashConfiguredByAdmin', $null))
            $port = $key.GetValue('ListenerPort', $null)
            if ($null -ne $port) { $sstp.listener_port = [int]$port }
        } finally {
            $key.Close()
        }
    }
} catch {
    Add-ProbeError 'sstp' $_
}

# ListenerPort absent = default 443 (RRASBLOG-FAQ3; absence semantics [U], DOMAIN 10).
$sstpPort = 443
if ($null -ne $sstp.listener_port) { $sstpPort = [int]$sstp.listener_port }

try {
    # MSDOC-RemoteAccessCommon; SslCertificate is X509Certificate2 in 5.1, byte[] in 7 (AOVPNTOOLS).
    $remoteAccess = Get-RemoteAccess -ErrorAction Stop
    $vpnStatus = Get-PropertyValue $remoteAccess 'VpnStatus'
    if ($null -ne $vpnStatus) { $sstp.remote_access.vpn_status = $vpnStatus.ToString() }
    # DAStatus 'Installed' = DirectAccess enabled: its certificate is tied to ConnectTo (DOMAIN 14).
    $daStatus = Get-PropertyValue $remoteAccess 'DAStatus'
    if ($null -ne $daStatus) { $sstp.remote_access.directaccess = ($daStatus.ToString() -eq 'Installed') }
    $sslCertificate = Get-PropertyValue $remoteAccess 'SslCertificate'
    if ($sslCertificate -is [System.Security.Cryptography.X509Certificates.X509Certificate2]) {
        $sstp.remote_access.thumbprint = $sslCertificate.Thumbprint.ToUpperInvariant()
    } elseif ($sslCertificate -is [byte[]] -and $sslCertificate.Length -gt 0) {
        $decoded = [System.Security.Cryptography.X509Certificates.X509Certificate2]::new([byte[]]$sslCertificate)
        $sstp.remote_access.thumbprint = $decoded.Thumbprint.ToUpperInvariant()
    } elseif ($null -ne $sslCertificate) {
        $thumb = Get-PropertyValue $sslCertificate 'Thumbprint'
        if ($null -ne $thumb) { $sstp.remote_access.thumbprint = ([string]$thumb).ToUpperInvariant() }
    }
} catch {
    Add-ProbeError 'remote_access' $_
}

# ---------------------------------------------------------------- http_sys (registry, DOMAIN 2.1, 13)
$httpSys = [ordered]@{
    ip_bindings      = [System.Collections.Generic.List[object]]::new()
    sni_bindings     = [System.Collections.Generic.List[object]]::new()
    url_reservations = [System.Collections.Generic.List[object]]::new()
    ccs_bindings     = [System.Collections.Generic.List[object]]::new()
    registered_urls  = $null
}
$allIpBindings = [System.Collections.Generic.List[object]]::new()
$allSniBindings = [System.Collections.Generic.List[object]]::new()
try {
    $allIpBindings = Read-SslBindings 'SslBindingInfo' 'http_sys'
    foreach ($binding in $allIpBindings) {
        if ((Get-EndpointPort $binding.endpoint) -eq $sstpPort) { $httpSys.ip_bindings.Add($binding) }
    }
} catch {
    $httpSys.ip_bindings = $null
    Add-ProbeError 'http_sys' $_
}
try {
    # SNI bindings beat IP bindings at the handshake (JEXUS-DOC, DOMAIN 2.2).
    $allSniBindings = Read-SslBindings 'SslSniBindingInfo' 'http_sys'
    foreach ($binding in $allSniBindings) {
        if ((Get-EndpointPort $binding.endpoint) -eq $sstpPort) { $httpSys.sni_bindings.Add($binding) }
    }
} catch {
    $httpSys.sni_bindings = $null
    Add-ProbeError 'http_sys' $_
}
try {
    # Central Certificate Store bindings (IIS sslFlags bit 2) live under SslCcsBindingInfo (DOMAIN 14).
    foreach ($binding in (Read-SslBindings 'SslCcsBindingInfo' 'http_sys')) {
        if ((Get-EndpointPort $binding.endpoint) -eq $sstpPort) { $httpSys.ccs_bindings.Add($binding) }
    }
} catch {
    $httpSys.ccs_bindings = $null
    Add-ProbeError 'http_sys' $_
}
try {
    # DOMAIN 14: the URLs registered in HTTP.sys tell whether SSTP listens; a PID 4 listener cannot.
    # With TLS offloaded (UseHttps = 0) SSTP's HTTPS URL is not expected: unknown, null.
    if ($sstp.use_https -ne $false) { $httpSys.registered_urls = Get-RegisteredUrls $sstpPort }
} catch {
    $httpSys.registered_urls = $null
    Add-ProbeError 'http_sys' $_
}
try {
    # UrlAclInfo: value name = URL, data = security descriptor, binary or SDDL string (DOMAIN 13, KB2980660).
    $aclKey = Open-LocalMachineKey ($HttpParametersKey + '\UrlAclInfo')
    if ($null -ne $aclKey) {
        try {
            foreach ($url in $aclKey.GetValueNames()) {
                if ([string]::IsNullOrEmpty($url)) { continue }
                if ((Get-UrlPort $url) -ne $sstpPort) { continue }
                $sddl = $null
                try {
                    $data = $aclKey.GetValue($url, $null)
                    if ($data -is [byte[]]) {
                        $descriptor = [System.Security.AccessControl.RawSecurityDescriptor]::new([byte[]]$data, 0)
                        $sddl = $descriptor.GetSddlForm([System.Security.AccessControl.AccessControlSections]::All)
                    } elseif ($null -ne $data) {
                        $sddl = [string]$data
                    }
                } catch {
                    Add-ProbeError 'http_sys' ("url reservation {0}: {1}" -f $url, $_.Exception.Message)
                }
                $httpSys.url_reservations.Add([ordered]@{ url = $url; sddl = $sddl })
            }
        } finally {
            $aclKey.Close()
        }
    }
} catch {
    $httpSys.url_reservations = $null
    Add-ProbeError 'http_sys' $_
}

# ---------------------------------------------------------------- iis (DOMAIN 4)
$iis = [ordered]@{ installed = $null; https_bindings = [System.Collections.Generic.List[object]]::new() }
try {
    # Service presence instead of Get-WindowsFeature (ServerManager may be missing or slow).
    $iis.installed = ($null -ne (Get-Service -Name W3SVC -ErrorAction SilentlyContinue))
    # A 64-bit path: a 32-bit host would be redirected to SysWOW64, where the file does not exist.
    $configPath = Join-Path $env:windir 'System32\inetsrv\config\applicationHost.config'
    $configFound = Test-Path -LiteralPath $configPath -PathType Leaf
    if ($iis.installed -and -not $configFound) {
        $iis.https_bindings = $null
        Add-ProbeError 'iis' ('W3SVC exists but {0} was not found' -f $configPath)
    }
    if ($configFound) {
        $document = [System.Xml.XmlDocument]::new()
        $document.XmlResolver = $null
        $document.Load($configPath)
        foreach ($site in $document.SelectNodes('/configuration/system.applicationHost/sites/site')) {
            $siteName = $site.GetAttribute('name')
            foreach ($binding in $site.SelectNodes('bindings/binding')) {
                if ($binding.GetAttribute('protocol') -ne 'https') { continue }
                $information = $binding.GetAttribute('bindingInformation')
                # bindingInformation is 'IP:port:host' (MSDOC-IIS-bindings); IPv6 addresses are bracketed.
                $parts = [regex]::Match($information, '^(?<ip>.*):(?<port>[0-9]+):(?<host>[^:]*)$')
                if (-not $parts.Success) { continue }
                if ([int]$parts.Groups['port'].Value -ne $sstpPort) { continue }
                $ip = $parts.Groups['ip'].Value
                $hostName = $parts.Groups['host'].Value
                $flagsText = $binding.GetAttribute('sslFlags')
                $sslFlags = 0
                if (-not [string]::IsNullOrEmpty($flagsText)) {
                    if (-not [int]::TryParse($flagsText, [ref]$sslFlags)) {
                        $sslFlags = 0
                        if ($flagsText -match 'Sni') { $sslFlags = $sslFlags -bor 1 }
                        if ($flagsText -match 'CentralCertStore') { $sslFlags = $sslFlags -bor 2 }
                    }
                }
                # The certificate lives in HTTP.sys: SNI binding for host names with sslFlags SNI (bit 1),
                # IP binding otherwise ('*' or empty = 0.0.0.0).
                $certHash = $null
                if ((($sslFlags -band 1) -ne 0) -and $hostName.Length -gt 0) {
                    $wanted = '{0}:{1}' -f $hostName, $sstpPort
                    foreach ($candidate in $allSniBindings) {
                        if ($candidate.endpoint -eq $wanted) { $certHash = $candidate.cert_hash }
                    }
                } else {
                    $address = $ip
                    if ($address -eq '*' -or $address -eq '') { $address = '0.0.0.0' }
                    $wanted = '{0}:{1}' -f $address, $sstpPort
                    foreach ($candidate in $allIpBindings) {
                        if ($candidate.endpoint -eq $wanted) { $certHash = $candidate.cert_hash }
                    }
                }
                $iis.https_bindings.Add([ordered]@{
                    site                = $siteName
                    binding_information = $information
                    cert_hash           = $certHash
                    ssl_flags           = $sslFlags
                })
            }
        }
    }
} catch {
    $iis.https_bindings = $null
    if ($hostInfo.is_admin -eq $false) {
        # applicationHost.config is readable by administrators only: say so, not "access denied".
        Add-ProbeError 'iis' 'applicationHost.config can only be read by an elevated administrator; the IIS bindings are unknown'
    } else {
        Add-ProbeError 'iis' $_
    }
}

# ---------------------------------------------------------------- listeners (DOMAIN 5: PID 4 = HTTP.sys)
$listeners = [System.Collections.Generic.List[object]]::new()
try {
    $tcpErrors = $null
    $connections = @(Get-NetTCPConnection -State Listen -LocalPort $sstpPort -ErrorAction SilentlyContinue -ErrorVariable tcpErrors)
    $tcpFailed = $false
    foreach ($problem in @($tcpErrors)) {
        if ($null -eq $problem) { continue }
        # 'No matching MSFT_NetTCPConnection objects' means nothing listens: not a probe error.
        if ($problem.CategoryInfo.Category -ne [System.Management.Automation.ErrorCategory]::ObjectNotFound) {
            $tcpFailed = $true
            Add-ProbeError 'listeners' $problem
        }
    }
    foreach ($connection in $connections) {
        $owner = [int]$connection.OwningProcess
        $processName = $null
        $process = Get-Process -Id $owner -ErrorAction SilentlyContinue
        if ($null -ne $process) { $processName = [string]$process.ProcessName }
        $listeners.Add([ordered]@{
            local_address = [string]$connection.LocalAddress
            port          = [int]$connection.LocalPort
            pid           = $owner
            process       = $processName
        })
    }
    # A failed query is "unknown", not "nothing listens" (which would read as SSTP_NOT_LISTENING).
    if ($tcpFailed) { $listeners = $null }
} catch {
    $listeners = $null
    Add-ProbeError 'listeners' $_
}

# ---------------------------------------------------------------- certificates (LocalMachine\My, DOMAIN 6)
$certificates = [System.Collections.Generic.List[object]]::new()
try {
    foreach ($certificate in @(Get-ChildItem -Path 'Cert:\LocalMachine\My' -ErrorAction Stop)) {
        try {
            if ($certificate -isnot [System.Security.Cryptography.X509Certificates.X509Certificate2]) { continue }
            $certificates.Add([ordered]@{
                thumbprint      = $certificate.Thumbprint.ToUpperInvariant()
                has_private_key = [bool]$certificate.HasPrivateKey
                private_key_usable = Test-PrivateKeyUsable $certificate
                friendly_name   = [string]$certificate.FriendlyName
                der             = [System.Convert]::ToBase64String($certificate.RawData)
            })
        } catch {
            Add-ProbeError 'certificates' $_
        }
    }
} catch {
    $certificates = $null
    Add-ProbeError 'certificates' $_
}

# ---------------------------------------------------------------- vpn_connections
$vpnConnections = $null
try {
    # DOMAIN 14: the summary counts users cheaply; Get-RemoteAccessConnectionStatistics lists every
    # connection and is slow on a busy server.
    $summary = Get-RemoteAccessConnectionStatisticsSummary -ErrorAction Stop
    # [int]$null is 0: a summary without the property is "unknown" (null), never "no users".
    $vpnTotal = Get-PropertyValue $summary 'TotalVpnConnections'
    if ($null -ne $vpnTotal) { $vpnConnections = [int]$vpnTotal }
} catch {
    # Expected to fail while RemoteAccess is stopped; only a running service makes it a probe error.
    $remoteAccessState = $services['RemoteAccess']
    if ($null -ne $remoteAccessState -and $remoteAccessState.status -eq 'Running') {
        Add-ProbeError 'vpn_connections' $_
    }
}

# ---------------------------------------------------------------- events (DOMAIN 7)
$events = [System.Collections.Generic.List[object]]::new()
$since = (Get-Date).AddHours(-$EventHours)
$eventQueries = @(
    @{ Providers = [string[]]@('Microsoft-Windows-RasSstp', 'RasSstp'); Ids = [int[]]@(8, 9, 12, 13, 18, 21) },
    @{ Providers = [string[]]@('Schannel'); Ids = [int[]]@(36870) }
)
$eventFailures = 0
$eventsOmitted = 0
foreach ($query in $eventQueries) {
    try {
        $records = Get-SstpEvents $query.Providers $query.Ids $since $MaxEvents
        if ($records.Count -ge $MaxEvents) {
            $total = Measure-SstpEvents $query.Providers $query.Ids $since
            if ($total -gt $records.Count) { $eventsOmitted += $total - $records.Count }
        }
        foreach ($record in $records) {
            $message = $null
            try { $message = $record.Message } catch { $message = $null }
            if ($null -ne $message -and $message.Length -gt 2000) { $message = $message.Substring(0, 2000) }
            $events.Add([ordered]@{
                provider = [string]$record.ProviderName
                id       = [int]$record.Id
                time     = ConvertTo-IsoTime $record.TimeCreated
                message  = $message
            })
        }
    } catch {
        $eventFailures += 1
        Add-ProbeError 'events' $_
    }
}
# No query could be read: the events are unknown, not "none".
if ($eventFailures -eq $eventQueries.Count) { $events = $null }
if ($null -eq $events) { $eventsOmitted = $null }

# ---------------------------------------------------------------- snapshot v1
$snapshot = [ordered]@{
    schema          = 'sstp-bot/snapshot/v1'
    collected_at    = ConvertTo-IsoTime ([datetime]::UtcNow)
    host            = $hostInfo
    services        = $services
    sstp            = $sstp
    http_sys        = $httpSys
    iis             = $iis
    listeners       = $listeners
    certificates    = $certificates
    vpn_connections = $vpnConnections
    events          = $events
    events_omitted  = $eventsOmitted
    endpoint        = $endpointInfo
    probe_errors    = $probeErrors
}
ConvertTo-Json -InputObject $snapshot -Depth 8 -Compress
