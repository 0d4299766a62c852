# Shared by every fix script. Not a script of its own: commands.scripts.load_script puts it in
# place of each `# sstp-bot-include: fix_common` line, so every script still runs as one standalone
# pipeline. The fix result object, the elevation check, and native commands run with an argument array.
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
