# Shared by bind_sstp_certificate and restart_remoteaccess. Not a script of its own:
# commands.scripts.load_script puts it in place of each `# sstp-bot-include: remoteaccess_restart` line.
# The SSTP port from the registry, and the bounded restart of RemoteAccess with its listener check.
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
