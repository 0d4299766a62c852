# sstp-bot-script: restart_iis
# Placeholder until the shipped script lands; the lab only reads the header and param().
[CmdletBinding()]
param(

)
$ErrorActionPreference = "Stop"
throw "placeholder"
