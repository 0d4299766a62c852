# sstp-bot-script: set_sstp_certificate
#
# Sets the SSTP certificate with 'Set-RemoteAccess -SslCertificate <X509Certificate2> -Force', the
# certificate taken from Cert:\LocalMachine\My (DOMAIN 1.3, AOVPNTOOLS Install-VpnServerTlsCertificate).
# Restarts nothing: the executor restarts RemoteAccess afterwards and waits for it (DESIGN 9).
# Refuses, changing nothing, when: not elevated; the RemoteAccess module is missing (Server Core without
# RSAT-RemoteAccess-PowerShell); the certificate is missing or has no private key; DirectAccess is
# enabled and the certificate is not the one SSTP already uses (its certificate is tied to the
# DirectAccess settings: Set-RemoteAccess checks the subject against ConnectTo, DOMAIN 14). Re-reads
# Get-RemoteAccess to decide; the certificate already configured is "ok, unchanged" in every case.
# Writes exactly one JSON document: {"ok", "changed", "detail", "exit_code"}.
[CmdletBinding()]
param(
    [Parameter(Mandatory = $true)]
    [ValidateNotNullOrEmpty()]
    # \z, not $: .NET's $ also matches before a final newline, which would reach netsh/Cert: paths.
    [ValidatePattern('^[0-9A-Fa-f]{40}\z')]
    [string]$Thumbprint
)

Set-StrictMode -Version 2
$ErrorActionPreference = 'Stop'
$ProgressPreference = 'SilentlyContinue'

# sstp-bot-include: fix_common

function Get-ConfiguredThumbprint($RemoteAccess) {
    # Windows PowerShell 5.1 returns SslCertificate as an X509Certificate2, PowerShell 7 as the CIM
    # uint8[] (DOMAIN 1.2, 11; AOVPNTOOLS Get-VpnServerTlsCertificate): read both, as the probe does, so
    # a successful Set-RemoteAccess is never reported as a mismatch.
    $property = $RemoteAccess.PSObject.Properties['SslCertificate']
    if ($null -eq $property -or $null -eq $property.Value) { return $null }
    $value = $property.Value
    if ($value -is [System.Security.Cryptography.X509Certificates.X509Certificate2]) { return $value.Thumbprint.ToUpperInvariant() }
    if ($value -is [byte[]] -and $value.Length -gt 0) {
        return ([System.Security.Cryptography.X509Certificates.X509Certificate2]::new([byte[]]$value)).Thumbprint.ToUpperInvariant()
    }
    return $null
}

$result = $null
try {
    $module = Get-Module -ListAvailable -Name RemoteAccess
    if (-not (Test-Elevated)) {
        $result = New-FixResult $false $false 'the remote session is not elevated; Set-RemoteAccess needs administrator rights' $null
    } elseif ($null -eq $module) {
        $result = New-FixResult $false $false 'the RemoteAccess PowerShell module is not installed (install RSAT-RemoteAccess-PowerShell, or set the certificate in rrasmgmt.msc)' $null
    } else {
        $certificate = Get-Item -LiteralPath ('Cert:\LocalMachine\My\' + $Thumbprint) -ErrorAction SilentlyContinue
        $remoteAccess = Get-RemoteAccess -ErrorAction Stop
        # DAStatus is a CIM string, 'Installed' or 'Uninstalled' (MSDOC-RemoteAccessCommon, DOMAIN 1.2).
        $daStatus = $remoteAccess.PSObject.Properties['DAStatus']
        if ($null -eq $certificate) {
            $result = New-FixResult $false $false ('certificate {0} is not in Cert:\LocalMachine\My' -f $Thumbprint) $null
        } elseif (-not $certificate.HasPrivateKey) {
            $result = New-FixResult $false $false ('certificate {0} has no private key; SSTP cannot use it' -f $Thumbprint) $null
        } elseif ((Get-ConfiguredThumbprint $remoteAccess) -eq $Thumbprint) {
            # Before the DirectAccess rule: keeping the certificate SSTP uses changes no setting, so it
            # is allowed there too (a plan rebinding it after IIS took port 443, DESIGN 4 [2]).
            $result = New-FixResult $true $false ('SSTP is already configured with certificate {0}' -f $Thumbprint) $null
        } elseif ($null -ne $daStatus -and [string]$daStatus.Value -eq 'Installed') {
            $result = New-FixResult $false $false 'DirectAccess is enabled on this server: its certificate is tied to the DirectAccess settings; change it in the Remote Access Management console' $null
        } else {
            $null = Set-RemoteAccess -SslCertificate $certificate -Force -ErrorAction Stop
            $after = Get-ConfiguredThumbprint (Get-RemoteAccess -ErrorAction Stop)
            if ($after -eq $Thumbprint) {
                $result = New-FixResult $true $true ('Set-RemoteAccess -SslCertificate {0}; RemoteAccess must be restarted to use it' -f $Thumbprint) $null
            } else {
                $result = New-FixResult $false $true ('Set-RemoteAccess ran but Get-RemoteAccess reports certificate {0}' -f $after) $null
            }
        }
    }
} catch {
    $result = New-FixResult $false $false ('Set-RemoteAccess failed: {0}' -f $_.Exception.Message) $null
}
ConvertTo-Json -InputObject $result -Depth 8 -Compress
