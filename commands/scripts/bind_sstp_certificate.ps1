# sstp-bot-script: bind_sstp_certificate
#
# Makes RRAS/SSTP use the certificate Cert:\LocalMachine\My\<Thumbprint>:
#   1. the certificate must exist in LocalMachine\My with a private key (RH-SSTPREQ, MSIIS-36870);
#   2. Set-RemoteAccess -SslCertificate $cert -Force (MSDOC-Set-RemoteAccess, AOVPNTOOLS
#      Install-VpnServerTlsCertificate), which records the hash under SstpSvc\Parameters (DOMAIN 0, 1.1);
#   3. restart RemoteAccess, which is required for the change to take effect (AOVPNTOOLS, POSHACME-DEPLOY),
#      and wait for Running and a listener on the SSTP port within RestartTimeoutSeconds (AOVPN);
#   4. on start RRAS creates its HTTP.sys bindings only where none exist (RRASBLOG-CHG1); if
#      0.0.0.0:PORT or [::]:PORT is still missing, add it with SSTP's AppId
#      (netsh http add sslcert ipport=... certhash=... appid={ba195980-...} certstorename=MY: KB947027,
#      RRASBLOG-CHG2), then re-read everything.
# Idempotent: when the certificate is already bound everywhere and SSTP listens, nothing is touched
# (changed=false, no restart). DISRUPTIVE otherwise: the restart drops every connected VPN user.
# A binding that carries another certificate is not deleted here (delete_httpsys_binding does that).
# Writes exactly one JSON document: {"ok", "changed", "detail", "exit_code"}.
[CmdletBinding()]
param(
    [Parameter(Mandatory = $true)]
    [ValidateNotNullOrEmpty()]
    [ValidatePattern('^[0-9A-Fa-f]{40}$')]
    [string]$Thumbprint,

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

$HttpBindingsKey = 'SYSTEM\CurrentControlSet\Services\HTTP\Parameters\SslBindingInfo'

function ConvertTo-Hex($Value) {
    # REG_BINARY / byte[] -> upper-case hex without separators; anything else -> $null.
    if ($null -eq $Value) { return $null }
    if ($Value -isnot [byte[]]) { return $null }
    if ($Value.Length -eq 0) { return $null }
    return [System.BitConverter]::ToString($Value).Replace('-', '')
}

function Get-HttpSysBinding([string]$Endpoint) {
    # Registry form of the HTTP.sys binding (DOMAIN 2.1): SslCertHash = SHA-1 thumbprint bytes, AppId = GUID.
    $key = [Microsoft.Win32.Registry]::LocalMachine.OpenSubKey(($HttpBindingsKey + '\' + $Endpoint), $false)
    if ($null -eq $key) { return $null }
    try {
        $appId = $null
        $appIdBytes = $key.GetValue('AppId', $null)
        if ($appIdBytes -is [byte[]] -and $appIdBytes.Length -eq 16) {
            $appId = ([guid]::new([byte[]]$appIdBytes)).ToString('B').ToLowerInvariant()
        }
        return [pscustomobject]@{ CertHash = (ConvertTo-Hex ($key.GetValue('SslCertHash', $null))); AppId = $appId }
    } finally {
        $key.Close()
    }
}

function Get-RemoteAccessThumbprint {
    # SslCertificate is an X509Certificate2 in 5.1 and a byte[] in PowerShell 7 (AOVPNTOOLS).
    $remoteAccess = Get-RemoteAccess -ErrorAction Stop
    $property = $remoteAccess.PSObject.Properties['SslCertificate']
    if ($null -eq $property -or $null -eq $property.Value) { return $null }
    $value = $property.Value
    if ($value -is [System.Security.Cryptography.X509Certificates.X509Certificate2]) { return $value.Thumbprint.ToUpperInvariant() }
    if ($value -is [byte[]]) {
        return ([System.Security.Cryptography.X509Certificates.X509Certificate2]::new([byte[]]$value)).Thumbprint.ToUpperInvariant()
    }
    $thumb = $value.PSObject.Properties['Thumbprint']
    if ($null -ne $thumb) { return ([string]$thumb.Value).ToUpperInvariant() }
    return $null
}

function Get-BindState([string]$Thumb, [string]$Sha256, [int]$Port, [bool]$CheckBindings) {
    # Everything the fix must leave true (DOMAIN 9, verify-after-fix invariants).
    $problems = [System.Collections.Generic.List[string]]::new()
    $missing = [System.Collections.Generic.List[string]]::new()
    $bound = $null
    try {
        $bound = Get-RemoteAccessThumbprint
    } catch {
        $problems.Add(('Get-RemoteAccess failed: {0}' -f $_.Exception.Message))
    }
    $configured = ($bound -eq $Thumb)
    if (-not $configured) { $problems.Add(('Get-RemoteAccess reports certificate {0}' -f $bound)) }
    # SHA256CertificateHash is what SSTP's crypto binding uses (KB947026, TN-EVT-18).
    $registryHash = ConvertTo-Hex (Get-SstpRegistryValue 'SHA256CertificateHash')
    if ($null -ne $registryHash -and $registryHash -ne $Sha256) {
        $configured = $false
        $problems.Add(('SstpSvc SHA256CertificateHash is {0}, expected {1}' -f $registryHash, $Sha256))
    }
    if ($CheckBindings) {
        foreach ($endpoint in @(('0.0.0.0:{0}' -f $Port), ('[::]:{0}' -f $Port))) {
            $binding = Get-HttpSysBinding $endpoint
            if ($null -eq $binding) {
                $missing.Add($endpoint)
                $problems.Add(('no HTTP.sys binding on {0}' -f $endpoint))
            } elseif ($binding.CertHash -ne $Thumb) {
                $problems.Add(('HTTP.sys binding {0} carries certificate {1} (AppId {2}); delete it first' -f $endpoint, $binding.CertHash, $binding.AppId))
            }
        }
    }
    $service = Get-Service -Name RemoteAccess -ErrorAction SilentlyContinue
    $running = ($null -ne $service -and $service.Status -eq [System.ServiceProcess.ServiceControllerStatus]::Running)
    if (-not $running) { $problems.Add('RemoteAccess is not running') }
    if ($running -and -not (Test-Listening $Port)) { $problems.Add(('SSTP (HTTP.sys, PID 4) does not listen on port {0}' -f $Port)) }
    return [pscustomobject]@{ Configured = $configured; Problems = $problems; Missing = $missing }
}

$result = $null
# Set once Set-RemoteAccess or the restart has begun: a failure after that point still changed the
# server (and dropped VPN users), and the result must say so.
$changed = $false
try {
    $thumb = $Thumbprint.ToUpperInvariant()
    $certificatePath = 'Cert:\LocalMachine\My\' + $thumb
    if (-not (Test-Elevated)) {
        $result = New-FixResult $false $false 'the remote session is not elevated; Set-RemoteAccess and the restart need administrator rights' $null
    } elseif (-not (Test-Path -LiteralPath $certificatePath)) {
        $result = New-FixResult $false $false ('certificate {0} is not in Cert:\LocalMachine\My' -f $thumb) $null
    } else {
        $certificate = Get-Item -LiteralPath $certificatePath -ErrorAction Stop
        if (-not $certificate.HasPrivateKey) {
            $result = New-FixResult $false $false ('certificate {0} has no private key; SSTP cannot use it (MSIIS-36870)' -f $thumb) $null
        }
    }
    if ($null -eq $result) {
        $sha = [System.Security.Cryptography.SHA256]::Create()
        try {
            $sha256 = ConvertTo-Hex ($sha.ComputeHash($certificate.RawData))
        } finally {
            $sha.Dispose()
        }
        $port = Get-SstpPort
        # UseHttps=0 means TLS is offloaded to a load balancer and SSTP has no HTTP.sys bindings (RH-OFFLOAD).
        $useHttps = Get-SstpRegistryValue 'UseHttps'
        $checkBindings = ($null -eq $useHttps -or [int]$useHttps -ne 0)
        $before = Get-BindState $thumb $sha256 $port $checkBindings
        if ($before.Problems.Count -eq 0) {
            $result = New-FixResult $true $false ('certificate {0} is already bound and SSTP listens on port {1}' -f $thumb, $port) $null
        } else {
            $notes = [System.Collections.Generic.List[string]]::new()
            $exitCode = $null
            if (-not $before.Configured) {
                $null = Set-RemoteAccess -SslCertificate $certificate -Force -ErrorAction Stop
                $changed = $true
                $notes.Add(('Set-RemoteAccess -SslCertificate {0}' -f $thumb))
            }
            $changed = $true
            $restart = Restart-RemoteAccessService $RestartTimeoutSeconds $port
            $notes.Add($restart.Detail)
            if ($checkBindings) {
                $netsh = Join-Path $env:windir 'System32\netsh.exe'
                foreach ($endpoint in @(('0.0.0.0:{0}' -f $port), ('[::]:{0}' -f $port))) {
                    if ($null -ne (Get-HttpSysBinding $endpoint)) { continue }
                    # KB947027 / RRASBLOG-CHG2 method; each key=value is one argument. SSTP's AppId
                    # (RRASBLOG-CHG2, DOMAIN 3) stays inside a quoted string: a bare {...} on a PowerShell
                    # command line is a script block and netsh answers "The parameter is incorrect"
                    # (WSDOCS#5922, DOMAIN 9).
                    $arguments = [string[]]@(
                        'http', 'add', 'sslcert',
                        ('ipport=' + $endpoint),
                        ('certhash=' + $thumb),
                        'appid={ba195980-cd49-458b-9e23-c84ee0adcd75}',
                        'certstorename=MY'
                    )
                    $run = Invoke-NativeCommand $netsh $arguments
                    $exitCode = $run.ExitCode
                    $notes.Add(('netsh http add sslcert ipport={0}: exit {1} {2}' -f $endpoint, $run.ExitCode, $run.Output))
                }
            }
            $after = Get-BindState $thumb $sha256 $port $checkBindings
            if ($after.Problems.Count -eq 0) {
                $notes.Add(('certificate {0} bound; SSTP listens on port {1}' -f $thumb, $port))
                $result = New-FixResult $true $true ($notes -join '; ') $exitCode
            } else {
                $notes.Add(('still wrong: {0}' -f ($after.Problems -join '; ')))
                $result = New-FixResult $false $true ($notes -join '; ') $exitCode
            }
        }
    }
} catch {
    $result = New-FixResult $false $changed ('bind_sstp_certificate failed: {0}' -f $_.Exception.Message) $null
}
ConvertTo-Json -InputObject $result -Depth 8 -Compress
