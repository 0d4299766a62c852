# sstp-bot-script: delete_httpsys_binding
# Placeholder until the shipped script lands; the lab only reads the header and param().
[CmdletBinding()]
param(
    [Parameter(Mandatory)][string]$Endpoint
)
$ErrorActionPreference = "Stop"
throw "placeholder"
