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

function New-FixResult([bool]$Ok, [bool]$Changed, [string]$Detail, $ExitCode) {
    # The fix result contract (DESIGN 2, 9): {"ok", "changed", "detail", "exit_code"}.
    $code = $null
    if ($null -ne $ExitCode) { $code = [int]$ExitCode }
    return [ordered]@{ ok = $Ok; changed = $Changed; detail = $Detail; exit_code = $code }
}

function Test-Elevated {
    # DOMAIN 9: changes need an elevated token; a UAC-filtered local account is not in the role.
    $principal = [Security.Principal.WindowsPrincipal][Security.Principal.WindowsIdentity]::GetCurrent()
    return $principal.IsInRole([Security.Principal.WindowsBuiltInRole]::Administrator)
}

function Invoke-NativeCommand([string]$FilePath, [string[]]$ArgumentList) {
    # Arguments go as an array, one element each: nothing is ever re-parsed as PowerShell.
    # 2>&1 into a variable (never piped to Out-Null, which can leave $LASTEXITCODE stale: DOMAIN 9). In 5.1 a
    # redirected stderr line becomes an ErrorRecord that 'Stop' would turn into a terminating error.
    $ErrorActionPreference = 'Continue'
    $global:LASTEXITCODE = 0
    $lines = & $FilePath @ArgumentList 2>&1
    $exitCode = $LASTEXITCODE
    $text = (@($lines) | ForEach-Object { [string]$_ }) -join "`n"
    return [pscustomobject]@{ ExitCode = [int]$exitCode; Output = $text.Trim() }
}

$SstpParametersKey = 'SYSTEM\CurrentControlSet\Services\SstpSvc\Parameters'   # DOMAIN 1.1

function Get-SstpRegistryValue([string]$Name) {
    $key = [Microsoft.Win32.Registry]::LocalMachine.OpenSubKey($SstpParametersKey, $false)
    if ($null -eq $key) { return $null }
    try {
        # Unary comma: a REG_BINARY byte[] must reach the caller whole, not unrolled into bytes.
        return ,$key.GetValue($Name, $null)
    } finally {
        $key.Close()
    }
}

function Get-SstpPort {
    # ListenerPort (DWORD, default 443: RRASBLOG-FAQ3, RRASBLOG-LISTENER).
    $value = Get-SstpRegistryValue 'ListenerPort'
    if ($null -eq $value) { return 443 }
    return [int]$value
}

function Test-Listening([int]$Port) {
    # AOVPN: after a restart RH polls Get-NetTCPConnection -LocalPort 443 -State Listen. SSTP listens through
    # HTTP.sys, whose sockets belong to PID 4 (System: OLDNEWTHING-2018, DOMAIN 5). Another process on the
    # port is not SSTP listening; it is what keeps SSTP from listening, so it does not count.
    $found = @(Get-NetTCPConnection -State Listen -LocalPort $Port -ErrorAction SilentlyContinue | Where-Object { [int]$_.OwningProcess -eq 4 })
    return ($found.Count -gt 0)
}

function Get-Remaining($Clock, [int]$TimeoutSeconds) {
    $left = $TimeoutSeconds - $Clock.Elapsed.TotalSeconds
    if ($left -lt 1) { $left = 1 }
    return [TimeSpan]::FromSeconds($left)
}

function Invoke-ServiceControl([int]$TimeoutSeconds, [bool]$WasRunning, $Clock, $Notes) {
    # Fallback when a background job cannot be started (for example a constrained endpoint):
    # ServiceController.Stop/Start with WaitForStatus(status, timeout), bounded by the same deadline.
    $service = Get-Service -Name RemoteAccess -ErrorAction Stop
    $dependents = [System.Collections.Generic.List[string]]::new()
    foreach ($dependent in @($service.DependentServices)) {
        if ($dependent.Status -eq [System.ServiceProcess.ServiceControllerStatus]::Running) { $dependents.Add($dependent.ServiceName) }
    }
    try {
        if ($WasRunning) {
            if ($service.Status -ne [System.ServiceProcess.ServiceControllerStatus]::StopPending) { $service.Stop() }
            $service.WaitForStatus([System.ServiceProcess.ServiceControllerStatus]::Stopped, (Get-Remaining $Clock $TimeoutSeconds))
        }
        $service.Refresh()
        if ($service.Status -ne [System.ServiceProcess.ServiceControllerStatus]::StartPending) { $service.Start() }
        $service.WaitForStatus([System.ServiceProcess.ServiceControllerStatus]::Running, (Get-Remaining $Clock $TimeoutSeconds))
    } catch {
        $Notes.Add(('service control failed: {0}' -f $_.Exception.Message))
    }
    # ServiceController.Stop also stops running dependents; start them again as Restart-Service would.
    foreach ($name in $dependents) {
        try {
            Start-Service -Name $name -ErrorAction Stop
        } catch {
            $Notes.Add(('dependent service {0} did not start: {1}' -f $name, $_.Exception.Message))
        }
    }
}

function Restart-RemoteAccessService([int]$TimeoutSeconds, [int]$Port) {
    # Restart RemoteAccess (Restart-Service; Start-Service when it is stopped) inside a background job
    # with a timeout, wait for Running, then poll for a listener on the SSTP port, all bounded by one
    # deadline: the pattern of AOVPN Install-SstpLetsEncryptCertificate*.ps1 (DOMAIN 1.3). A hung stop
    # cannot block the session. A restart drops every VPN user.
    $clock = [System.Diagnostics.Stopwatch]::StartNew()
    $notes = [System.Collections.Generic.List[string]]::new()
    $service = Get-Service -Name RemoteAccess -ErrorAction Stop
    $wasRunning = ($service.Status -ne [System.ServiceProcess.ServiceControllerStatus]::Stopped)
    if ($wasRunning) { $notes.Add('restarting RemoteAccess') } else { $notes.Add('starting RemoteAccess (it was stopped)') }
    $job = $null
    try {
        $job = Start-Job -ArgumentList $wasRunning -ScriptBlock {
            param([bool]$Restart)
            if ($Restart) {
                Restart-Service -Name RemoteAccess -Force -ErrorAction Stop -WarningAction SilentlyContinue
            } else {
                Start-Service -Name RemoteAccess -ErrorAction Stop -WarningAction SilentlyContinue
            }
        }
    } catch {
        $notes.Add(('background job unavailable ({0}); using ServiceController' -f $_.Exception.Message))
        $job = $null
    }
    if ($null -ne $job) {
        $finished = Wait-Job -Job $job -Timeout ([int][Math]::Ceiling((Get-Remaining $clock $TimeoutSeconds).TotalSeconds))
        if ($null -eq $finished) {
            $notes.Add(('service restart did not finish within {0} s' -f $TimeoutSeconds))
            Stop-Job -Job $job
        } else {
            $jobErrors = $null
            $null = Receive-Job -Job $job -ErrorAction SilentlyContinue -ErrorVariable jobErrors
            foreach ($problem in @($jobErrors)) {
                if ($null -ne $problem) { $notes.Add(('service restart: {0}' -f $problem)) }
            }
        }
        Remove-Job -Job $job -Force
    } else {
        Invoke-ServiceControl $TimeoutSeconds $wasRunning $clock $notes
    }
    # Wait for Running within what is left of the deadline, then for the listener.
    $service.Refresh()
    try {
        $service.WaitForStatus([System.ServiceProcess.ServiceControllerStatus]::Running, (Get-Remaining $clock $TimeoutSeconds))
    } catch {
        $notes.Add(('RemoteAccess is {0}' -f $service.Status))
    }
    $service.Refresh()
    if ($service.Status -eq [System.ServiceProcess.ServiceControllerStatus]::Stopped) {
        # The restart stopped the service but did not bring it back within the deadline: never leave
        # the VPN down because of a fix. One more start, bounded to 60 s, then report what it is.
        $notes.Add('RemoteAccess was left stopped; starting it once more')
        try {
            $service.Start()
            $service.WaitForStatus([System.ServiceProcess.ServiceControllerStatus]::Running, [TimeSpan]::FromSeconds(60))
        } catch {
            $notes.Add(('RemoteAccess did not start: {0}' -f $_.Exception.Message))
        }
        $service.Refresh()
    }
    $running = ($service.Status -eq [System.ServiceProcess.ServiceControllerStatus]::Running)
    $listening = $false
    if ($running) {
        $notes.Add('RemoteAccess running')
        while ($true) {
            $listening = Test-Listening $Port
            if ($listening -or $clock.Elapsed.TotalSeconds -ge $TimeoutSeconds) { break }
            Start-Sleep -Seconds 2
        }
        if ($listening) {
            $notes.Add(('listening on port {0}' -f $Port))
        } else {
            $notes.Add(('SSTP (HTTP.sys, PID 4) does not listen on port {0} after {1} s' -f $Port, $TimeoutSeconds))
        }
    }
    return [pscustomobject]@{ Running = $running; Listening = $listening; Detail = ($notes -join '; ') }
}

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
