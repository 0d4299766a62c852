# sstp-bot-script: remove_iis_binding
#
# Removes one IIS https binding from a site in applicationHost.config with appcmd.exe (works without the
# WebAdministration/IISAdministration modules), then re-reads the file to verify (DESIGN 5, 9).
# Facts: RH-BIND (the IIS https binding on 443 is the usual cause; remove it, then iisreset);
# MSDOC-IIS-bindings (<site><bindings><binding protocol bindingInformation="IP:port:host" sslFlags>);
# DOMAIN 4: removing the configuration binding may leave the HTTP.sys binding behind, so the plan
# deletes that separately (delete_httpsys_binding). Idempotent: an absent binding is ok, changed=false.
# Writes exactly one JSON document: {"ok", "changed", "detail", "exit_code"}.
[CmdletBinding()]
param(
    [Parameter(Mandatory = $true)]
    [ValidateNotNullOrEmpty()]
    [ValidatePattern('^[^"\x00-\x1f]{0,259}[^"\x00-\x1f\\]\z')]
    [string]$Site,

    [Parameter(Mandatory = $true)]
    [ValidateNotNullOrEmpty()]
    [ValidatePattern('^(\*|[0-9.]+|\[[0-9A-Fa-f:]+\]):[0-9]{1,5}:[A-Za-z0-9.*-]{0,253}\z')]
    [string]$BindingInformation
)

Set-StrictMode -Version 2
$ErrorActionPreference = 'Stop'
$ProgressPreference = 'SilentlyContinue'

# sstp-bot-include: fix_common

function Find-HttpsBinding([string]$ConfigPath, [string]$SiteName, [string]$Information) {
    # Re-reads applicationHost.config as XML; returns @(site found, binding found).
    $document = [System.Xml.XmlDocument]::new()
    $document.XmlResolver = $null
    $document.Load($ConfigPath)
    $siteFound = $false
    $bindingFound = $false
    foreach ($siteNode in $document.SelectNodes('/configuration/system.applicationHost/sites/site')) {
        if (-not [string]::Equals($siteNode.GetAttribute('name'), $SiteName, [System.StringComparison]::OrdinalIgnoreCase)) { continue }
        $siteFound = $true
        foreach ($binding in $siteNode.SelectNodes('bindings/binding')) {
            if ($binding.GetAttribute('protocol') -ne 'https') { continue }
            if ([string]::Equals($binding.GetAttribute('bindingInformation'), $Information, [System.StringComparison]::OrdinalIgnoreCase)) {
                $bindingFound = $true
            }
        }
    }
    return @($siteFound, $bindingFound)
}

$result = $null
try {
    $configPath = Join-Path $env:windir 'System32\inetsrv\config\applicationHost.config'
    $appcmd = Join-Path $env:windir 'System32\inetsrv\appcmd.exe'
    if (-not (Test-Elevated)) {
        $result = New-FixResult $false $false 'the remote session is not elevated; appcmd needs administrator rights' $null
    } elseif (-not (Test-Path -LiteralPath $configPath -PathType Leaf)) {
        $result = New-FixResult $true $false 'IIS is not installed (no applicationHost.config); nothing to remove' $null
    } else {
        $before = Find-HttpsBinding $configPath $Site $BindingInformation
        if (-not $before[1]) {
            $what = 'site not found'
            if ($before[0]) { $what = 'binding not present' }
            $result = New-FixResult $true $false ("https binding '{0}' on site '{1}': {2}; nothing to remove" -f $BindingInformation, $Site, $what) $null
        } elseif (-not (Test-Path -LiteralPath $appcmd -PathType Leaf)) {
            $result = New-FixResult $false $false ('appcmd.exe not found at {0}' -f $appcmd) $null
        } else {
            # appcmd syntax: set site /site.name:NAME /-bindings.[protocol='https',bindingInformation='...']
            # (MSDOC-IIS-bindings shows the '/+bindings.[...]' form; '/-' removes the matching element).
            # Both values passed as single arguments; the validation patterns exclude quotes. Windows
            # PowerShell 5.1 wraps an argument containing a space in "..." (a site name such as 'Default
            # Web Site'); appcmd reads it back as one argument (hence no trailing backslash, SITE_RE).
            $arguments = [string[]]@(
                'set', 'site',
                ('/site.name:{0}' -f $Site),
                ("/-bindings.[protocol='https',bindingInformation='{0}']" -f $BindingInformation)
            )
            $run = Invoke-NativeCommand $appcmd $arguments
            $after = Find-HttpsBinding $configPath $Site $BindingInformation
            if ($after[1]) {
                $result = New-FixResult $false $false ("appcmd did not remove the binding (exit {0}): {1}" -f $run.ExitCode, $run.Output) $run.ExitCode
            } else {
                $detail = "removed https binding '{0}' from site '{1}'; the HTTP.sys binding may remain (DOMAIN 4)" -f $BindingInformation, $Site
                $result = New-FixResult $true $true $detail $run.ExitCode
            }
        }
    }
} catch {
    $result = New-FixResult $false $false ('remove_iis_binding failed: {0}' -f $_.Exception.Message) $null
}
ConvertTo-Json -InputObject $result -Depth 8 -Compress
