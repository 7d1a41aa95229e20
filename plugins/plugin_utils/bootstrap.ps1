# The mailops.iis_smtp bootstrap: the only text on the command line. It reads
# the agent and its request from stdin (one JSON line), runs the agent only if
# it is byte for byte the one the controller hashed, and leaves the agent's
# response on the pipeline. The request stays data: the agent decodes it.
# The transport puts the agent's SHA-256 in place of AGENT_SHA256.
Set-StrictMode -Version 2
$ErrorActionPreference = 'Stop'
$ProgressPreference = 'SilentlyContinue'
$payload = ConvertFrom-Json -InputObject (@($input) -join "`n")
$agent = [string]$payload.agent
$bytes = [Text.Encoding]::UTF8.GetBytes($agent)
$hash = [BitConverter]::ToString([Security.Cryptography.SHA256]::Create().ComputeHash($bytes)) -replace '-', ''
if ($hash -cne 'AGENT_SHA256') {
throw 'mailops.iis_smtp bootstrap: the agent on stdin does not match the hash on the command line'
}
& ([ScriptBlock]::Create($agent)) ([string]$payload.request)
