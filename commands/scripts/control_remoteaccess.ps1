# sstp-bot-script: control_remoteaccess
#
# Asks the service controller to start or stop RemoteAccess and returns at once: it never waits for the
# service. ServiceController.Start()/.Stop() return at once and the status passes through
# StartPending/StopPending; RemoteAccess can take minutes to stop on a busy server (DOMAIN 14). The
# executor polls remoteaccess_state until the status it needs, with its own deadline (DESIGN 9), so no
# WinRM operation outlasts operation_timeout and nothing is left running in a shell about to close.
# Stop is a no-op when already Stopped or StopPending; Start is a no-op when Running or StartPending,
# and refuses while StopPending (the executor waits for Stopped first). Stopping drops every VPN user.
# Writes exactly one JSON document: {"ok", "changed", "detail", "exit_code", "status", "sstp_registered"}.
[CmdletBinding()]
param(
    [Parameter(Mandatory = $true)]
    [ValidateNotNullOrEmpty()]
    [ValidateSet('Start', 'Stop')]
    [string]$Action
)

Set-StrictMode -Version 2
$ErrorActionPreference = 'Stop'
$ProgressPreference = 'SilentlyContinue'

# sstp-bot-include: fix_common

$result = $null
$status = $null
try {
    $service = Get-Service -Name RemoteAccess -ErrorAction SilentlyContinue
    if (-not (Test-Elevated)) {
        $result = New-FixResult $false $false 'the remote session is not elevated; controlling RemoteAccess needs administrator rights' $null
    } elseif ($null -eq $service) {
        $result = New-FixResult $false $false 'the RemoteAccess service is not installed' $null
    } else {
        $before = $service.Status.ToString()
        $status = $before
        if ($Action -eq 'Stop') {
            if ($before -eq 'Stopped' -or $before -eq 'StopPending') {
                $result = New-FixResult $true $false ('RemoteAccess is already {0}' -f $before) $null
            } else {
                $service.Stop()
                $service.Refresh()
                $status = $service.Status.ToString()
                $result = New-FixResult $true $true ('asked RemoteAccess to stop; it is {0}' -f $status) $null
            }
        } else {
            if ($before -eq 'Running' -or $before -eq 'StartPending') {
                $result = New-FixResult $true $false ('RemoteAccess is already {0}' -f $before) $null
            } elseif ($before -eq 'StopPending') {
                $result = New-FixResult $false $false 'RemoteAccess is still stopping; wait for Stopped before starting it' $null
            } else {
                $service.Start()
                $service.Refresh()
                $status = $service.Status.ToString()
                $result = New-FixResult $true $true ('asked RemoteAccess to start; it is {0}' -f $status) $null
            }
        }
    }
} catch {
    $result = New-FixResult $false $false ('control_remoteaccess {0} failed: {1}' -f $Action, $_.Exception.Message) $null
}
$result['status'] = $status
$result['sstp_registered'] = $null
ConvertTo-Json -InputObject $result -Depth 8 -Compress
