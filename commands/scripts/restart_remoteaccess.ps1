# sstp-bot-script: restart_remoteaccess
# Placeholder until the shipped script lands; the lab only reads the header and param().
[CmdletBinding()]
param(
    [ValidateRange(10, 1800)][int]$RestartTimeoutSeconds = 120
)
$ErrorActionPreference = "Stop"
throw "placeholder"
