# sstp-bot-script: probe
# Placeholder until the shipped script lands; the lab only reads the header and param().
[CmdletBinding()]
param(
    [ValidateRange(1, 720)][int]$EventHours = 24
)
$ErrorActionPreference = "Stop"
throw "placeholder"
