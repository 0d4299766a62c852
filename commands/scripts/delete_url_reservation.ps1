# sstp-bot-script: delete_url_reservation
#
# Deletes one HTTP.sys URL reservation with 'netsh http delete urlacl url=URL' (MSDOC-netsh-http;
# KB2980660 lists deleting a reservation as part of a server-side SSTP fix; RasSstp event 9 = SSTP could
# not secure its URL, TN-EVT-9). Reservations persist as values of
# HKLM\SYSTEM\CurrentControlSet\Services\HTTP\Parameters\UrlAclInfo (value name = URL, DOMAIN 13):
# the result is decided by re-reading that key, not by netsh's localised text or exit code (DOMAIN 9).
# Idempotent: an absent reservation is ok, changed=false.
# Writes exactly one JSON document: {"ok", "changed", "detail", "exit_code"}.
[CmdletBinding()]
param(
    [Parameter(Mandatory = $true)]
    [ValidateNotNullOrEmpty()]
    # Only a port's root or SSTP's own path can block SSTP's URL (DOMAIN 14): any other reservation
    # (DirectAccess IP-HTTPS's /C574AC30-.../) is refused here, whatever a plan asks.
    [ValidatePattern('^https?://[^\s/"''`$;|&<>]{1,255}/(sra_\{BA195980-CD49-458B-9E23-C84EE0ADCD75\}/)?\z')]
    [string]$Url
)

Set-StrictMode -Version 2
$ErrorActionPreference = 'Stop'
$ProgressPreference = 'SilentlyContinue'

# sstp-bot-include: fix_common

$UrlAclKey = 'SYSTEM\CurrentControlSet\Services\HTTP\Parameters\UrlAclInfo'

function Test-ReservationPresent([string]$Reservation) {
    $key = [Microsoft.Win32.Registry]::LocalMachine.OpenSubKey($UrlAclKey, $false)
    if ($null -eq $key) { return $false }
    try {
        foreach ($name in $key.GetValueNames()) {
            if ([string]::Equals($name, $Reservation, [System.StringComparison]::OrdinalIgnoreCase)) { return $true }
        }
        return $false
    } finally {
        $key.Close()
    }
}

$result = $null
try {
    $netsh = Join-Path $env:windir 'System32\netsh.exe'
    if (-not (Test-Elevated)) {
        $result = New-FixResult $false $false 'the remote session is not elevated; netsh http delete urlacl needs administrator rights' $null
    } elseif (-not (Test-ReservationPresent $Url)) {
        $result = New-FixResult $true $false ('no URL reservation {0}; nothing to delete' -f $Url) $null
    } else {
        # 'url=...' is one argument string: braces in 'sra_{...}' stay text, never a script block.
        $run = Invoke-NativeCommand $netsh ([string[]]@('http', 'delete', 'urlacl', ('url=' + $Url)))
        $present = $true
        for ($attempt = 0; $attempt -lt 5; $attempt++) {
            $present = Test-ReservationPresent $Url
            if (-not $present) { break }
            Start-Sleep -Milliseconds 500
        }
        if ($present) {
            $result = New-FixResult $false $false ('URL reservation {0} is still present (netsh exit {1}): {2}' -f $Url, $run.ExitCode, $run.Output) $run.ExitCode
        } else {
            $result = New-FixResult $true $true ('deleted URL reservation {0}' -f $Url) $run.ExitCode
        }
    }
} catch {
    $result = New-FixResult $false $false ('delete_url_reservation failed: {0}' -f $_.Exception.Message) $null
}
ConvertTo-Json -InputObject $result -Depth 8 -Compress
