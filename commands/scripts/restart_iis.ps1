# sstp-bot-script: restart_iis
#
# Restarts IIS with 'iisreset /restart /timeout:60' so it drops the https binding it had pushed into HTTP.sys
# (RH-BIND: remove the IIS binding, then run iisreset; DOMAIN 4). Captures iisreset's output with 2>&1
# and its $LASTEXITCODE, then re-reads the W3SVC state. Disrupts web sites on the server, not VPN users.
# /timeout:60 bounds the stop phase so the script returns within about a minute (DESIGN 9: no script
# waits without a bound; a PSRP call must not outlast operation_timeout).
# Writes exactly one JSON document: {"ok", "changed", "detail", "exit_code"}.
[CmdletBinding()]
param()

Set-StrictMode -Version 2
$ErrorActionPreference = 'Stop'
$ProgressPreference = 'SilentlyContinue'

# sstp-bot-include: fix_common

$result = $null
try {
    $iisreset = Join-Path $env:windir 'System32\iisreset.exe'
    if (-not (Test-Elevated)) {
        $result = New-FixResult $false $false 'the remote session is not elevated; iisreset needs administrator rights' $null
    } elseif (-not (Test-Path -LiteralPath $iisreset -PathType Leaf)) {
        $result = New-FixResult $true $false 'iisreset.exe not found: IIS is not installed; nothing to restart' $null
    } else {
        $run = Invoke-NativeCommand $iisreset ([string[]]@('/restart', '/timeout:60'))
        $w3svc = Get-Service -Name W3SVC -ErrorAction SilentlyContinue
        $state = 'absent'
        if ($null -ne $w3svc) { $state = $w3svc.Status.ToString() }
        if ($run.ExitCode -eq 0) {
            $result = New-FixResult $true $true ('iisreset /restart /timeout:60 succeeded; W3SVC is {0}. {1}' -f $state, $run.Output) $run.ExitCode
        } else {
            $result = New-FixResult $false $true ('iisreset /restart /timeout:60 failed (exit {0}); W3SVC is {1}. {2}' -f $run.ExitCode, $state, $run.Output) $run.ExitCode
        }
    }
} catch {
    $result = New-FixResult $false $false ('restart_iis failed: {0}' -f $_.Exception.Message) $null
}
ConvertTo-Json -InputObject $result -Depth 8 -Compress
