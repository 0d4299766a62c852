# Shared by the scripts that read HTTP.sys. Not a script of its own: commands.scripts.load_script puts
# it in place of each `# sstp-bot-include: httpsys` line. Uses Invoke-NativeCommand (fix_common).
function Test-BindingPresent([string]$SubKey, [string]$Name) {
    # DOMAIN 2.1: HTTP.sys keeps its SSL bindings under HTTP\Parameters\SslBindingInfo (IP) and
    # SslSniBindingInfo (host name). Read-only .NET access: no provider wildcard expansion of '*:443'.
    $path = 'SYSTEM\CurrentControlSet\Services\HTTP\Parameters\' + $SubKey + '\' + $Name
    $key = [Microsoft.Win32.Registry]::LocalMachine.OpenSubKey($path, $false)
    if ($null -eq $key) { return $false }
    $key.Close()
    return $true
}

function Get-SstpPort {
    # DOMAIN 1.1: SstpSvc\Parameters\ListenerPort, 443 when absent (RRASBLOG-FAQ3).
    $key = [Microsoft.Win32.Registry]::LocalMachine.OpenSubKey('SYSTEM\CurrentControlSet\Services\SstpSvc\Parameters', $false)
    if ($null -eq $key) { return 443 }
    try {
        $port = $key.GetValue('ListenerPort', $null)
        if ($null -eq $port) { return 443 }
        return [int]$port
    } finally {
        $key.Close()
    }
}

function Test-TlsOffloaded {
    # DOMAIN 1.1: UseHttps = 0 means SSTP speaks plain HTTP behind a TLS-offloading load balancer.
    $key = [Microsoft.Win32.Registry]::LocalMachine.OpenSubKey('SYSTEM\CurrentControlSet\Services\SstpSvc\Parameters', $false)
    if ($null -eq $key) { return $false }
    try {
        $value = $key.GetValue('UseHttps', $null)
        return ($null -ne $value -and [int64]$value -eq 0)
    } finally {
        $key.Close()
    }
}

function Get-RegisteredUrls([int]$Port) {
    # DOMAIN 5, 14: 'netsh http show servicestate view=requestq' lists the URLs registered in HTTP.sys,
    # upper case and not localised (the labels are). A PID 4 listener cannot tell SSTP from IIS, AD FS
    # or RD Gateway; SSTP's registered URL can. The URLs are taken by their shape, the labels ignored
    # (DOMAIN 13). Returns the URLs on $Port; throws when netsh fails.
    $netsh = Join-Path $env:windir 'System32\netsh.exe'
    $run = Invoke-NativeCommand $netsh ([string[]]@('http', 'show', 'servicestate', 'view=requestq'))
    if ($run.ExitCode -ne 0) { throw ('netsh http show servicestate failed (exit {0}): {1}' -f $run.ExitCode, $run.Output) }
    $urls = [System.Collections.Generic.List[string]]::new()
    foreach ($match in [regex]::Matches($run.Output, '(?im)^\s*(HTTPS?://\S+)\s*$')) {
        $url = $match.Groups[1].Value.ToUpperInvariant()
        $hostPort = [regex]::Match($url, '^HTTPS?://(\[[^\]]*\]|[^/:]*)(:(?<port>[0-9]+))?/')
        if (-not $hostPort.Success) { continue }
        $urlPort = 80
        if ($url.StartsWith('HTTPS')) { $urlPort = 443 }
        if ($hostPort.Groups['port'].Success) { $urlPort = [int]$hostPort.Groups['port'].Value }
        if ($urlPort -ne $Port) { continue }
        if (-not $urls.Contains($url)) { $urls.Add($url) }
    }
    return ,$urls
}
