# sstp-bot-script: delete_httpsys_binding
#
# Deletes one HTTP.sys SSL binding: 'netsh http delete sslcert ipport=IP:port' for IP endpoints
# ('0.0.0.0:443', '[::]:443', '10.0.0.5:443') or 'hostnameport=host:port' for SNI endpoints
# (RH-BIND, MSDOC-netsh-http). RRAS only creates its bindings where none exist (RRASBLOG-CHG1), so a
# foreign binding must go before bind_sstp_certificate. netsh text is localised and its exit codes are
# not trusted (DOMAIN 9): the result is decided by re-reading the registry
# (HKLM\SYSTEM\CurrentControlSet\Services\HTTP\Parameters\SslBindingInfo / SslSniBindingInfo, DOMAIN 2.1).
# Idempotent: an absent binding is ok, changed=false ("not found" from netsh is not a failure).
# Writes exactly one JSON document: {"ok", "changed", "detail", "exit_code"}.
[CmdletBinding()]
param(
    [Parameter(Mandatory = $true)]
    [ValidateNotNullOrEmpty()]
    [ValidatePattern('^([0-9]{1,3}(\.[0-9]{1,3}){3}|\[[0-9A-Fa-f:.]+\]|(\*|[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*):[0-9]{1,5}\z')]
    [string]$Endpoint
)

Set-StrictMode -Version 2
$ErrorActionPreference = 'Stop'
$ProgressPreference = 'SilentlyContinue'

# sstp-bot-include: fix_common
# sstp-bot-include: httpsys

$result = $null
try {
    # IPv4 and [IPv6] endpoints are IP bindings; anything else is a host name (SNI) binding.
    $isIp = ($Endpoint -match '^[0-9]{1,3}(\.[0-9]{1,3}){3}:[0-9]+\z') -or $Endpoint.StartsWith('[')
    $subKey = 'SslSniBindingInfo'
    $selector = 'hostnameport'
    $argument = 'hostnameport=' + $Endpoint
    if ($isIp) {
        $subKey = 'SslBindingInfo'
        $selector = 'ipport'
        $argument = 'ipport=' + $Endpoint
    }
    $netsh = Join-Path $env:windir 'System32\netsh.exe'
    if (-not (Test-Elevated)) {
        $result = New-FixResult $false $false 'the remote session is not elevated; netsh http delete sslcert needs administrator rights' $null
    } elseif (-not (Test-BindingPresent $subKey $Endpoint)) {
        $result = New-FixResult $true $false ('no HTTP.sys binding for {0}={1}; nothing to delete' -f $selector, $Endpoint) $null
    } else {
        # One argument per element: the endpoint is data for netsh, never PowerShell source.
        $run = Invoke-NativeCommand $netsh ([string[]]@('http', 'delete', 'sslcert', $argument))
        # HTTP.sys persists its configuration in the registry; allow a moment before judging.
        $present = $true
        for ($attempt = 0; $attempt -lt 5; $attempt++) {
            $present = Test-BindingPresent $subKey $Endpoint
            if (-not $present) { break }
            Start-Sleep -Milliseconds 500
        }
        if ($present) {
            $result = New-FixResult $false $false ('HTTP.sys binding {0}={1} is still present (netsh exit {2}): {3}' -f $selector, $Endpoint, $run.ExitCode, $run.Output) $run.ExitCode
        } else {
            $result = New-FixResult $true $true ('deleted HTTP.sys binding {0}={1}' -f $selector, $Endpoint) $run.ExitCode
        }
    }
} catch {
    $result = New-FixResult $false $false ('delete_httpsys_binding failed: {0}' -f $_.Exception.Message) $null
}
ConvertTo-Json -InputObject $result -Depth 8 -Compress
