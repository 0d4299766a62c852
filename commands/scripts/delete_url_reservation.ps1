# sstp-bot-script: delete_url_reservation
# Placeholder until the shipped script lands; the lab only reads the header and param().
[CmdletBinding()]
param(
    [Parameter(Mandatory)][string]$Url
)
$ErrorActionPreference = "Stop"
throw "placeholder"
