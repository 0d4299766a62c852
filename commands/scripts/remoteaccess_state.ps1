# sstp-bot-script: remoteaccess_state
#
# Reads, changing nothing: RemoteAccess's service status and whether SSTP's URL is registered in HTTP.sys
# ('HTTPS://+:PORT/SRA_{BA195980-CD49-458B-9E23-C84EE0ADCD75}/' in 'netsh http show servicestate
# view=requestq', DOMAIN 14). A PID 4 listener on the port does not prove SSTP listens: IIS, AD FS and
# RD Gateway listen through HTTP.sys too (DOMAIN 5, 14). sstp_registered is null when it cannot be told
# (netsh failed, or TLS is offloaded: UseHttps = 0, DOMAIN 1.1). The executor polls this while it waits.
# Writes exactly one JSON document: {"ok", "changed", "detail", "exit_code", "status", "sstp_registered"}.
[CmdletBinding()]
param()

Set-StrictMode -Version 2
$ErrorActionPreference = 'Stop'
$ProgressPreference = 'SilentlyContinue'

# sstp-bot-include: fix_common
# sstp-bot-include: httpsys

$result = $null
$status = $null
$registered = $null
try {
    $service = Get-Service -Name RemoteAccess -ErrorAction SilentlyContinue
    if ($null -eq $service) {
        $result = New-FixResult $false $false 'the RemoteAccess service is not installed' $null
    } else {
        $status = $service.Status.ToString()
        $detail = 'RemoteAccess is {0}' -f $status
        try {
            $port = Get-SstpPort
            if (Test-TlsOffloaded) { throw 'TLS is offloaded (UseHttps = 0)' }
            $sstpUrl = 'HTTPS://+:{0}/SRA_{{BA195980-CD49-458B-9E23-C84EE0ADCD75}}/' -f $port
            $registered = (Get-RegisteredUrls $port).Contains($sstpUrl)
            $detail = '{0}; SSTP URL registered: {1}' -f $detail, $registered
        } catch {
            $detail = '{0}; HTTP.sys registrations unknown: {1}' -f $detail, $_.Exception.Message
        }
        $result = New-FixResult $true $false $detail $null
    }
} catch {
    $result = New-FixResult $false $false ('remoteaccess_state failed: {0}' -f $_.Exception.Message) $null
}
$result['status'] = $status
$result['sstp_registered'] = $registered
ConvertTo-Json -InputObject $result -Depth 8 -Compress
