# sstp-bot-script: control_remoteaccess
#
# Asks the service controller to start or stop RemoteAccess and returns at once: it never waits for the
# service. ServiceController.Start()/.Stop() return at once and the status passes through
# StartPending/StopPending; RemoteAccess can take minutes to stop on a busy server (DOMAIN 14). The
# executor polls remoteaccess_state until the status it needs, with its own deadline (DESIGN 9), so no
# WinRM operation outlasts operation_timeout and nothing is left running in a shell about to close.
# Stop is a no-op when already Stopped or StopPending; Start is a no-op when Running or StartPending,
# and refuses while StopPending (the executor waits for Stopped first). Stop refuses while a service that
# depends on RemoteAccess runs (it would be stopped, waited for, and never restarted). Stopping drops
# every VPN user.
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
            # ServiceController.Stop() first stops every running dependent service and waits up to 30 s
            # for each (.NET Framework reference source, ServiceController.Stop), and Start() never brings
            # them back: stopping them would wait here (DESIGN 9) and leave other services stopped
            # (DESIGN 5, never worse off). Refuse instead and name them.
            $dependents = @($service.DependentServices | Where-Object { $_.Status.ToString() -ne 'Stopped' } | ForEach-Object { [string]$_.ServiceName })
            if ($before -eq 'Stopped' -or $before -eq 'StopPending') {
                $result = New-FixResult $true $false ('RemoteAccess is already {0}' -f $before) $null
            } elseif ($dependents.Length -gt 0) {
                $result = New-FixResult $false $false ('RemoteAccess was not stopped: services that depend on it are running ({0}); stop them first' -f ($dependents -join ', ')) $null
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
