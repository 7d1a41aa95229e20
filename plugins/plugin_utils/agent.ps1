param([Parameter(Mandatory = $true)][string]$RequestB64)
Set-StrictMode -Version 2
$ErrorActionPreference = 'Stop'
$ProgressPreference = 'SilentlyContinue'

# The mailops.iis_smtp agent: observes a host's SMTP virtual servers and runs
# the steps the controller decided. The contract is docs/agent-protocol.md.
# The transport strips every line and drops comment lines, so: no here-strings,
# no block comments, no line continuations, no comment after code.

# Closed sets of the protocol. A request with anything else is refused before
# any step runs, so no value from it reaches sc.exe or the metabase unchecked.
# The lines between the apply-only markers travel only with an apply request:
# an observe call ships the agent without them, and then refuses apply.
$Actions = @('observe')
# mailops:apply-only begin
$Actions = @('observe', 'apply')
$Ops = @('set_start_mode', 'start_service', 'continue_service', 'instance')
$StartModes = @('auto', 'delayed-auto', 'demand', 'disabled')
$Commands = @('start', 'stop', 'pause', 'continue')
$Vias = @('method', 'server_command')
$Services = @('SMTPSVC', 'IISADMIN')
# Per command: the ADSI method, and the MD_SERVER_COMMAND code (docs/windows-facts.md:
# documented for W3SVC and FTP only).
$Controls = @{ 'start' = @('Start', 1); 'stop' = @('Stop', 2); 'pause' = @('Pause', 4); 'continue' = @('Continue', 8) }
# mailops:apply-only end
# The SMTPSVC states in which its process is up, so that ServerState is its own.
$StateReadable = @('Running', 'Paused', 'Pause Pending', 'Continue Pending')

function ConvertTo-AgentError($Exception) {
    # ADSI failures arrive wrapped (MethodInvocationException around
    # TargetInvocationException); the HRESULT that means something is on the
    # COMException inside, e.g. 0x80005000 when the IIS ADSI provider is missing.
    # DirectoryServicesCOMException, which [ADSI] throws for most provider
    # errors, derives from COMException and is found by the same test.
    # Service control failures carry a Win32Exception whose own HResult is a
    # generic E_FAIL: its NativeErrorCode (1058 disabled) is the meaningful
    # part, reported as HRESULT_FROM_WIN32 (0x80070422).
    $e = $Exception
    while ($null -ne $e -and $e -isnot [Runtime.InteropServices.COMException] -and $e -isnot [ComponentModel.Win32Exception]) {
        $e = $e.InnerException
    }
    if ($null -eq $e) {
        $e = $Exception
    }
    $code = $e.HResult
    if ($e -is [ComponentModel.Win32Exception]) {
        $code = 0x80070000 -bor ($e.NativeErrorCode -band 0xFFFF)
    }
    @{ message = ([string]$e.Message).Trim(); hresult = '0x{0:X8}' -f $code; type = $e.GetType().FullName }
}

function New-AgentError($Type, $Message) {
    # The agent's own errors (a refused request or step): no HRESULT, a protocol type.
    @{ message = $Message; hresult = $null; type = $Type }
}

function Get-Field($Object, $Name) {
    # StrictMode 2 throws on a missing property, and JSON may omit any key.
    # PSObject property lookup ignores case; the protocol's keys do not.
    if ($Object -isnot [Management.Automation.PSCustomObject]) {
        return $null
    }
    $property = $Object.PSObject.Properties[$Name]
    if ($null -eq $property -or $property.Name -cne $Name) {
        return $null
    }
    # The comma keeps a one-element or empty list a list on its way out.
    return ,$property.Value
}

# mailops:apply-only begin
function Assert-In($Name, $Value, $Set) {
    # Only a string is a value: a one-element array would pass -cnotcontains.
    if ($Value -isnot [string] -or $Set -cnotcontains $Value) {
        throw ($Name + ' must be one of: ' + ($Set -join ', '))
    }
}

function Assert-Int($Name, $Value, $Least) {
    if ($Value -isnot [int] -or $Value -lt $Least) {
        throw ($Name + ' must be an integer >= ' + $Least)
    }
}

function Read-Step($Step) {
    $op = Get-Field $Step 'op'
    Assert-In 'op' $op $Ops
    if ($op -ceq 'instance') {
        $id = Get-Field $Step 'id'
        Assert-Int 'id' $id 1
        $command = Get-Field $Step 'command'
        Assert-In 'command' $command $Commands
        $via = Get-Field $Step 'via'
        if ($via -isnot [Collections.IList] -or $via.Count -eq 0) {
            throw 'via must be a non-empty list'
        }
        foreach ($way in $via) {
            Assert-In 'via entries' $way $Vias
        }
        return @{ op = $op; id = $id; command = $command; via = $via }
    }
    $service = Get-Field $Step 'service'
    if ($op -ceq 'start_service') {
        Assert-In 'service' $service $Services
    } elseif ($service -isnot [string] -or $service -cne 'SMTPSVC') {
        throw 'service must be SMTPSVC'
    }
    $mode = Get-Field $Step 'start_mode'
    if ($op -ceq 'set_start_mode') {
        Assert-In 'start_mode' $mode $StartModes
    }
    @{ op = $op; id = $null; command = $null; via = @('service'); service = $service; start_mode = $mode }
}

function Read-Watch($Watch) {
    if ($null -eq $Watch) {
        return $null
    }
    if ($Watch -isnot [Management.Automation.PSCustomObject]) {
        throw 'watch must be an object'
    }
    $names = Get-Field $Watch 'services'
    $ids = Get-Field $Watch 'instances'
    if ($names -isnot [Collections.IList] -or $ids -isnot [Collections.IList]) {
        throw 'watch must have the lists services and instances'
    }
    foreach ($name in $names) {
        Assert-In 'watch services' $name $Services
    }
    foreach ($id in $ids) {
        Assert-Int 'watch instances' $id 1
    }
    @{ services = $names; instances = $ids }
}

# mailops:apply-only end

function Get-OsInfo {
    $r = @{ caption = $null; version = $null; build = $null; product_type = $null; error = $null }
    try {
        # Get-WmiObject: it reads the local WMI service directly, with nothing
        # to configure, in every Windows PowerShell a 2012 R2-2022 host runs.
        # Get-CimInstance would work locally too; its WS-Man default matters
        # only for remote queries, which the agent never makes.
        $os = Get-WmiObject -Class Win32_OperatingSystem
        $r.caption = [string]$os.Caption
        $r.version = [string]$os.Version
        $r.build = [int]$os.BuildNumber
        $r.product_type = [int]$os.ProductType
    } catch {
        $r.error = ConvertTo-AgentError $_.Exception
    }
    $r
}

function Get-ServiceInfo($Name) {
    $r = @{ installed = $null; state = $null; start_mode = $null; delayed_auto_start = $null; error = $null }
    try {
        $service = Get-WmiObject -Class Win32_Service -Filter ("Name='" + $Name + "'")
        $r.installed = $null -ne $service
        if ($r.installed) {
            $r.state = [string]$service.State
            $r.start_mode = [string]$service.StartMode
            # Win32_Service reports delayed start as plain Auto; only the registry tells them apart.
            $key = Get-Item -LiteralPath ('HKLM:\SYSTEM\CurrentControlSet\Services\' + $Name)
            $r.delayed_auto_start = $key.GetValue('DelayedAutostart', 0) -eq 1
        }
    } catch {
        $r.error = ConvertTo-AgentError $_.Exception
    }
    $r
}

function Get-InstanceInfo($Id, $Entry, $ReadState) {
    $r = @{ id = $Id; server_comment = $null; server_state = $null; bindings = [Collections.ArrayList]@(); auto_start = $null; error = $null }
    try {
        # SchemaClassName is the ADSI Class; siblings such as Info are not virtual servers.
        if ($Entry.psbase.SchemaClassName -cne 'IIsSmtpServer') {
            return $null
        }
        $properties = $Entry.psbase.Properties
        # While SMTPSVC is stopped or starting, ServerState is empty or what the
        # service last wrote (docs/windows-facts.md): unknown, so not reported.
        $state = $properties['ServerState'].Value
        if ($ReadState -and $null -ne $state) {
            $r.server_state = [int]$state
        }
        $r.server_comment = [string]$properties['ServerComment'].Value
        foreach ($binding in $properties['ServerBindings']) {
            $null = $r.bindings.Add([string]$binding)
        }
        $auto = $properties['ServerAutoStart'].Value
        if ($null -ne $auto) {
            $r.auto_start = [bool]$auto
        }
    } catch {
        $r.error = ConvertTo-AgentError $_.Exception
    }
    $r
}

function Get-Observation {
    $services = @{ SMTPSVC = Get-ServiceInfo 'SMTPSVC'; IISADMIN = Get-ServiceInfo 'IISADMIN' }
    $metabase = @{ ok = $false; error = $null }
    # ArrayList, not @(): Windows PowerShell's ConvertTo-Json can turn arrays
    # that passed through the pipeline into {"value": ..., "Count": ...}.
    $instances = [Collections.ArrayList]@()
    $iisadmin = [string]$services.IISADMIN.state
    if ($iisadmin -cne 'Running') {
        # An ADSI bind demand-starts IISADMIN (docs/windows-facts.md); looking must change nothing.
        $metabase.error = New-AgentError 'iisadmin_not_running' ('IISADMIN state: ' + $iisadmin + '; the metabase was not read, because binding it would start IISADMIN')
    } else {
        try {
            $root = [ADSI]'IIS://localhost/SMTPSVC'
            # [ADSI] binds lazily; RefreshCache binds now, so a missing provider or
            # denied access surfaces here with its HRESULT.
            $root.psbase.RefreshCache()
            $found = @{}
            $readState = $StateReadable -ccontains [string]$services.SMTPSVC.state
            foreach ($child in $root.psbase.Children) {
                # The id comes from the path, which needs no bind: a child that
                # cannot be read is reported with its error, not dropped.
                if ([string]$child.psbase.Path -match '/([0-9]{1,9})$') {
                    $info = Get-InstanceInfo ([int]$Matches[1]) $child $readState
                    if ($null -ne $info) {
                        $found[$info.id] = $info
                    }
                }
            }
            foreach ($id in ($found.Keys | Sort-Object)) {
                $null = $instances.Add($found[$id])
            }
            $metabase.ok = $true
        } catch {
            $metabase.error = ConvertTo-AgentError $_.Exception
            $instances.Clear()
        }
    }
    @{
        os = Get-OsInfo
        computer_name = $env:COMPUTERNAME
        ps_version = $PSVersionTable.PSVersion.ToString()
        is_admin = ([Security.Principal.WindowsPrincipal][Security.Principal.WindowsIdentity]::GetCurrent()).IsInRole([Security.Principal.WindowsBuiltInRole]::Administrator)
        services = $services
        metabase = $metabase
        instances = $instances
    }
}

function Test-Stable($Observation, $Watch) {
    # Only what the plan watches holds the wait; no watch means everything.
    foreach ($name in $Observation.services.Keys) {
        if (($null -eq $Watch -or $Watch.services -ccontains $name) -and [string]$Observation.services[$name].state -like '* Pending') {
            return $false
        }
    }
    foreach ($instance in $Observation.instances) {
        if (($null -eq $Watch -or $Watch.instances -contains $instance.id) -and @(1, 3, 5, 7) -contains $instance.server_state) {
            return $false
        }
    }
    $true
}

# mailops:apply-only begin
function Read-ServerState($Entry) {
    $Entry.psbase.RefreshCache()
    $Entry.psbase.Properties['ServerState'].Value
}

function Invoke-Way($Step, $Via, $Result, $Clock, $Limit, $Poll) {
    # Returns the agent's own error when it refuses, $null when done; Windows errors are thrown.
    if ($Step.op -ceq 'set_start_mode') {
        # sc.exe because Set-Service in 5.1 cannot set Automatic (Delayed Start).
        $output = & sc.exe config SMTPSVC start= $Step.start_mode
        if ($LASTEXITCODE -ne 0) {
            throw ('sc.exe config SMTPSVC exited with ' + $LASTEXITCODE + ': ' + ($output -join ' '))
        }
        return $null
    }
    if ($Via -ceq 'service') {
        $service = Get-Service -Name $Step.service
        $from = 'Stopped'
        if ($Step.op -ceq 'continue_service') {
            $from = 'Paused'
        }
        # The SCM answers a control in the wrong state with an error (1056 on
        # Start); the agent sends none and says what it found.
        if ([string]$service.Status -cne $from) {
            $Result.state = [string]$service.Status
            return (New-AgentError 'wrong_state' ($Step.service + ' is ' + $Result.state + ', not ' + $from + ': the control was not sent'))
        }
        if ($from -ceq 'Stopped') {
            $service.Start()
        } else {
            $service.Continue()
        }
        # Start() and Continue() return while the service is still pending; a
        # later step must meet it settled. Start-Service would wait past any deadline.
        $service.Refresh()
        while ([string]$service.Status -like '*Pending' -and $Clock.ElapsedMilliseconds -lt $Limit) {
            Start-Sleep -Milliseconds $Poll
            $service.Refresh()
        }
        $Result.state = [string]$service.Status
        return $null
    }
    $entry = [ADSI]('IIS://localhost/SMTPSVC/' + $Step.id)
    if ($Via -ceq 'method') {
        # Two ways because neither is documented for SMTP (docs/windows-facts.md,
        # "NOT VERIFIED"); the controller says which to try and in what order.
        $null = $entry.psbase.Invoke($Controls[$Step.command][0])
        return $null
    }
    # ServerCommand is volatile and read only by a running SMTPSVC: written to
    # a stopped one it is lost, and it never starts the service.
    $smtp = [string](Get-Service -Name SMTPSVC).Status
    if ($smtp -cne 'Running') {
        return (New-AgentError 'wrong_state' ('SMTPSVC is ' + $smtp + ': only a running SMTPSVC reads ServerCommand; it was not written'))
    }
    $before = Read-ServerState $entry
    $code = $Controls[$Step.command][1]
    $null = $entry.Put('ServerCommand', $code)
    $null = $entry.SetInfo()
    # A write that SMTPSVC ignores also succeeds: done only when ServerState moves.
    $end = $Clock.ElapsedMilliseconds + 2000
    if ($end -gt $Limit) {
        $end = $Limit
    }
    do {
        Start-Sleep -Milliseconds $Poll
        $after = Read-ServerState $entry
    } while ($after -eq $before -and $Clock.ElapsedMilliseconds -lt $end)
    if ($after -eq $before) {
        return (New-AgentError 'no_effect' ('ServerCommand ' + $code + ' was written; ServerState stayed ' + $before))
    }
    $null
}

function Invoke-Step($Step, $Clock, $Limit, $Poll) {
    $r = @{ op = $Step.op; id = $Step.id; command = $Step.command; ok = $false; attempts = [Collections.ArrayList]@(); error = $null; state = $null }
    foreach ($via in $Step.via) {
        try {
            $r.error = Invoke-Way $Step $via $r $Clock $Limit $Poll
        } catch {
            $r.error = ConvertTo-AgentError $_.Exception
        }
        $r.ok = $null -eq $r.error
        $null = $r.attempts.Add(@{ via = $via; ok = $r.ok; error = $r.error })
        if ($r.ok) {
            break
        }
    }
    $r
}

# mailops:apply-only end

function Invoke-Request($Response, $Clock) {
    $steps = [Collections.ArrayList]@()
    $limit = 0
    $poll = 1
    $watch = $null
    $refusal = 'bad_request'
    try {
        try {
            $request = ConvertFrom-Json -InputObject ([Text.Encoding]::UTF8.GetString([Convert]::FromBase64String($RequestB64)))
        } catch {
            throw ('the request is not base64 of JSON: ' + $_.Exception.Message)
        }
        if ($request -isnot [Management.Automation.PSCustomObject]) {
            throw 'the request is not a JSON object'
        }
        $action = Get-Field $request 'action'
        if ($action -is [string]) {
            $Response.action = $action
        }
        $protocol = Get-Field $request 'protocol'
        if ($protocol -isnot [int] -or $protocol -ne 1) {
            $refusal = 'unsupported_protocol'
            throw ('protocol ' + $protocol + ' is not supported; this agent speaks 1')
        }
        if ($action -isnot [string] -or $Actions -cnotcontains $action) {
            throw ('action must be ' + ($Actions -join ' or '))
        }
# mailops:apply-only begin
        if ($action -ceq 'apply') {
            $timeout = Get-Field $request 'settle_timeout_s'
            Assert-Int 'settle_timeout_s' $timeout 0
            $poll = Get-Field $request 'poll_ms'
            Assert-Int 'poll_ms' $poll 1
            $list = Get-Field $request 'steps'
            if ($list -isnot [Collections.IList]) {
                throw 'steps must be a list'
            }
            for ($i = 0; $i -lt $list.Count; $i++) {
                try {
                    $null = $steps.Add((Read-Step $list[$i]))
                } catch {
                    throw ('step ' + ($i + 1) + ': ' + $_.Exception.Message)
                }
            }
            $watch = Read-Watch (Get-Field $request 'watch')
            $limit = 1000 * $timeout
        }
# mailops:apply-only end
    } catch {
        $Response.error = New-AgentError $refusal $_.Exception.Message
        return
    }
    $Response.ok = $true
# mailops:apply-only begin
    foreach ($step in $steps) {
        $null = $Response.steps.Add((Invoke-Step $step $Clock $limit $poll))
    }
# mailops:apply-only end
    while ($true) {
        $observation = Get-Observation
        $Response.settled = Test-Stable $observation $watch
        if ($Response.settled -or $Clock.ElapsedMilliseconds -ge $limit) {
            break
        }
        Start-Sleep -Milliseconds $poll
    }
    $Response.observation = $observation
}

$clock = [Diagnostics.Stopwatch]::StartNew()
$response = @{ protocol = 1; agent_version = '1.0.0'; action = $null; ok = $false; error = $null; observation = $null; steps = [Collections.ArrayList]@(); settled = $false; elapsed_ms = 0 }
try {
    Invoke-Request $response $clock
} catch {
    # Whatever went wrong, the controller still gets a response line to read.
    $response.ok = $false
    $response.observation = $null
    $response.error = ConvertTo-AgentError $_.Exception
}
$response.elapsed_ms = $clock.ElapsedMilliseconds
$json = ConvertTo-Json -InputObject $response -Depth 8 -Compress
# The pipeline, not [Console]::Out: the psrp connection returns only pipeline output.
'MAILOPS-AGENT-1:' + [Convert]::ToBase64String([Text.Encoding]::UTF8.GetBytes($json))
