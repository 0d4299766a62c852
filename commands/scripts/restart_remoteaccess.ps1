# sstp-bot-script: restart_remoteaccess
#
# Restarts the RemoteAccess (RRAS) service, or starts it when stopped, then waits until it is Running and
# something listens on the SSTP port (SstpSvc\Parameters\ListenerPort, default 443), all within
# RestartTimeoutSeconds. Facts: AOVPNTOOLS / AOVPN (restart needed for certificate changes; restart with
# a timeout, wait for Running, poll Get-NetTCPConnection -State Listen); RRASBLOG-CHG1 (on start RRAS
# creates its HTTP.sys bindings where none exist). DISRUPTIVE: drops every connected VPN user.
# Writes exactly one JSON document: {"ok", "changed", "detail", "exit_code"}.
[CmdletBinding()]
param(
    [ValidateRange(10, 1800)]
    [int]$RestartTimeoutSeconds = 120
)

Set-StrictMode -Version 2
$ErrorActionPreference = 'Stop'
$ProgressPreference = 'SilentlyContinue'

# sstp-bot-include: fix_common

# sstp-bot-include: remoteaccess_restart

$result = $null
# Set once the restart has begun: a failure after that point still dropped the VPN users.
$changed = $false
try {
    if (-not (Test-Elevated)) {
        $result = New-FixResult $false $false 'the remote session is not elevated; restarting RemoteAccess needs administrator rights' $null
    } elseif ($null -eq (Get-Service -Name RemoteAccess -ErrorAction SilentlyContinue)) {
        $result = New-FixResult $false $false 'the RemoteAccess service is not installed' $null
    } else {
        $port = Get-SstpPort
        $changed = $true
        $outcome = Restart-RemoteAccessService $RestartTimeoutSeconds $port
        $ok = ($outcome.Running -and $outcome.Listening)
        $result = New-FixResult $ok $true $outcome.Detail $null
    }
} catch {
    $result = New-FixResult $false $changed ('restart_remoteaccess failed: {0}' -f $_.Exception.Message) $null
}
ConvertTo-Json -InputObject $result -Depth 8 -Compress
