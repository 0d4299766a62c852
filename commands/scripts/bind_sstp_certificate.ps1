# sstp-bot-script: bind_sstp_certificate
# Placeholder until the shipped script lands; the lab only reads the header and param().
[CmdletBinding()]
param(
    [Parameter(Mandatory)][ValidatePattern('^[0-9A-Fa-f]{40}$')][string]$Thumbprint,
    [ValidateRange(10, 1800)][int]$RestartTimeoutSeconds = 120
)
$ErrorActionPreference = "Stop"
throw "placeholder"
