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

# sstp-bot-include: fix_common

# sstp-bot-include: remoteaccess_restart

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
