# sstp-bot-script: add_sstp_httpsys_binding
#
# Adds SSTP's HTTP.sys binding on one wildcard endpoint ('0.0.0.0:PORT' or '[::]:PORT') with the
# KB947027 method: 'netsh http add sslcert ipport=... certhash=... appid={ba195980-...} certstorename=MY'
# (KB947027, RRASBLOG-CHG2, DOMAIN 1.3). The executor uses it to re-add a wildcard binding a plan deleted
# (never worse off, DESIGN 5) and after a RemoteAccess restart that left one missing. It refuses when the
# endpoint already has a binding: it never replaces anyone's binding. Re-reads the registry to decide
# (netsh text is localised, DOMAIN 9). Returns at once.
# Writes exactly one JSON document: {"ok", "changed", "detail", "exit_code"}.
[CmdletBinding()]
param(
    [Parameter(Mandatory = $true)]
    [ValidateNotNullOrEmpty()]
    [ValidatePattern('^(0\.0\.0\.0|\[::\]):[0-9]{1,5}\z')]
    [string]$Endpoint,

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
# sstp-bot-include: httpsys

$result = $null
try {
    $netsh = Join-Path $env:windir 'System32\netsh.exe'
    if (-not (Test-Elevated)) {
        $result = New-FixResult $false $false 'the remote session is not elevated; netsh http add sslcert needs administrator rights' $null
    } elseif (Test-BindingPresent 'SslBindingInfo' $Endpoint) {
        $result = New-FixResult $false $false ('{0} already has an HTTP.sys binding; it is not replaced' -f $Endpoint) $null
    } elseif (-not (Test-Path -LiteralPath ('Cert:\LocalMachine\My\' + $Thumbprint) -PathType Leaf)) {
        $result = New-FixResult $false $false ('certificate {0} is not in Cert:\LocalMachine\My' -f $Thumbprint) $null
    } else {
        # DOMAIN 9 / WSDOCS#5922: the AppId stays inside a string (a bare {...} is a script block).
        $arguments = [string[]]@('http', 'add', 'sslcert', ('ipport=' + $Endpoint), ('certhash=' + $Thumbprint), 'appid={ba195980-cd49-458b-9e23-c84ee0adcd75}', 'certstorename=MY')
        $run = Invoke-NativeCommand $netsh $arguments
        # As in delete_httpsys_binding: allow HTTP.sys a moment to persist the binding before judging.
        $present = $false
        for ($attempt = 0; $attempt -lt 5; $attempt++) {
            $present = Test-BindingPresent 'SslBindingInfo' $Endpoint
            if ($present) { break }
            Start-Sleep -Milliseconds 500
        }
        if ($present) {
            $result = New-FixResult $true $true ('added the SSTP binding {0} with certificate {1}' -f $Endpoint, $Thumbprint) $run.ExitCode
        } else {
            $result = New-FixResult $false $false ('netsh did not add the binding {0} (exit {1}): {2}' -f $Endpoint, $run.ExitCode, $run.Output) $run.ExitCode
        }
    }
} catch {
    $result = New-FixResult $false $false ('add_sstp_httpsys_binding failed: {0}' -f $_.Exception.Message) $null
}
ConvertTo-Json -InputObject $result -Depth 8 -Compress
