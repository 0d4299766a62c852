# sstp-bot-script: remove_iis_binding
# Placeholder until the shipped script lands; the lab only reads the header and param().
[CmdletBinding()]
param(
    [Parameter(Mandatory)][string]$Site,
    [Parameter(Mandatory)][ValidatePattern('^(\*|[0-9.]+|\[[0-9A-Fa-f:]+\]):(\d{1,5}):([A-Za-z0-9.*-]{0,253})$')][string]$BindingInformation
)
$ErrorActionPreference = "Stop"
throw "placeholder"
