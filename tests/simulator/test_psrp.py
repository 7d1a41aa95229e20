"""The PowerShell Remoting side of a simulated host, through pypsrp, the client Ansible's psrp connection uses.

A runspace pool must open, run the collection's bootstrap with the agent as
pipeline input, and answer as Windows does (the message sequences recorded in
pypsrp's ``tests/tests_pypsrp/responses/``); every other pipeline or message
is refused in words that say so; and the limits of the WinRM service and of
the Microsoft.PowerShell session configuration apply (sources in
docs/windows-facts.md, "PowerShell Remoting (psrp)").
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any, cast

import pytest
from pypsrp.complex_objects import PSInvocationState, RunspacePoolState
from pypsrp.exceptions import WinRMTransportError, WSManFaultError
from pypsrp.messages import MessageType
from pypsrp.powershell import PowerShell, RunspacePool
from pypsrp.wsman import WSMan

from tests.simulator.conftest import Running, ScriptedHost
from tests.simulator.emulator import build_call, decode_line, read_agent
from tests.simulator.model import Fleet, Host
from tests.simulator.server import WINDOWS_DEFAULTS, WinrmLimits
from tests.simulator.test_wsman_limits import FakeClock

QUOTA_MAX_SHELLS_PPQ = 0x803381E4
QUOTA_MAX_COMMANDS_PER_SHELL_PPQ = 0x803381E9
QUOTA_MAX_SHELLS = 0x803381A5
QUOTA_MAX_OPERATIONS = 0x803381A6
SHELL_NOT_FOUND = 0x8033805B
OBSERVE = {"protocol": 1, "action": "observe"}


def wsman(running: Running, name: str, **overrides: Any) -> WSMan:
    host = running.hosts[name]
    endpoint = running.simulator.endpoints[name]
    kwargs: dict[str, Any] = {
        "port": endpoint.port,
        "username": host.username,
        "password": host.password,
        "ssl": endpoint.scheme == "https",
        "auth": host.auth,
        "cert_validation": str(running.simulator.ca_path) if running.simulator.ca_path else True,
        "read_timeout": 10,
        "operation_timeout": 5,
    }
    kwargs.update(overrides)
    return WSMan("127.0.0.1", **kwargs)


def lines(*items: str) -> Any:
    """Pipeline input as Ansible's psrp connection passes it: a list, which pypsrp takes but does not annotate."""
    return list(items)


def bootstrap(request: dict[str, Any]) -> tuple[str, Any]:
    """What Ansible's psrp connection makes of the collection's call: the decoded script, stdin split into lines."""
    _command, arguments, stdin = build_call(read_agent(), request)
    script = base64.b64decode(arguments[0].split()[-1]).decode("utf-16-le")
    return script, lines(*stdin.decode("ascii").splitlines())


def recorded(pool: RunspacePool) -> list[int]:
    """Record the PSRP message types the server sends from now on."""
    seen: list[int] = []
    parse: Callable[..., Any] = pool._parse_responses

    def spy(responses: bytes, pipeline: Any = None) -> Any:
        results = parse(responses, pipeline)
        seen.extend(message_type for message_type, _value in results)
        return results

    pool._parse_responses = spy  # type: ignore[method-assign]
    return seen


def model_fleet(fleet: Any, **host: Any) -> Running:
    model = Fleet.from_dict({"hosts": {"relay01": {"password": "Pw-relay01", **host}}})
    running: Running = fleet(*model.hosts.values())
    return running


def test_the_bootstrap_and_agent_run_in_a_runspace_as_they_do_over_winrm(fleet: Any) -> None:
    running = model_fleet(fleet, instances=[{"id": 1, "comment": "Relay", "state": "paused"}])
    script, lines = bootstrap(OBSERVE)
    with RunspacePool(wsman(running, "relay01")) as pool:
        ps = PowerShell(pool)
        ps.add_script(script)
        output = ps.invoke(input=lines)
    assert ps.state == PSInvocationState.COMPLETED and not ps.had_errors and ps.streams.error == []
    [line] = output
    document = decode_line(line.encode())
    assert document["ok"] is True and document["action"] == "observe"
    assert document["observation"]["computer_name"] == "RELAY01"
    assert [(i["id"], i["server_state"]) for i in document["observation"]["instances"]] == [(1, 6)]

    command, arguments, stdin = build_call(read_agent(), OBSERVE)
    over_winrm = decode_line(running.hosts["relay01"].run_command(command, arguments, lambda: stdin).stdout)
    assert {**document, "elapsed_ms": 0} == {**over_winrm, "elapsed_ms": 0}


def test_a_runspace_pool_opens_and_a_pipeline_ends_as_on_windows(fleet: Any) -> None:
    running = fleet(ScriptedHost("relay01", outcome=None))
    with RunspacePool(wsman(running, "relay01")) as pool:
        # The CreateResponse: the client's own ShellId kept, the idle timeout it got, PSRP's streams.
        assert pool.shell.id == str(pool.id).upper()
        assert str(pool.shell.idle_time_out) == "PT7200.000S"
        assert pool.shell.output_streams == "stdout"
        assert pool.state == RunspacePoolState.OPENED
        assert pool.protocol_version == "2.3"
        seen = recorded(pool)
        ps = PowerShell(pool)
        ps.add_script("the script")
        output = ps.invoke(input=lines("one", "two"))
    # Output objects, then the final state: Windows sends no Running state first.
    assert seen == [MessageType.PIPELINE_OUTPUT, MessageType.PIPELINE_STATE]
    assert ps.state == PSInvocationState.COMPLETED
    # ScriptedHost echoes the script and reads its input as the bootstrap would.
    assert output == ["(script)|the script"]
    assert running.hosts["relay01"].calls == [("(script)", ["the script"])]


def test_the_pipeline_input_reaches_the_script_line_by_line(fleet: Any) -> None:
    host = ScriptedHost("relay01", reads_stdin=True)
    running = fleet(host)
    with RunspacePool(wsman(running, "relay01")) as pool:
        ps = PowerShell(pool)
        ps.add_script("the script")
        ps.invoke(input=lines('{"agent": "a",', '"request": "b"}'))
    assert host.stdin == [b'{"agent": "a",\n"request": "b"}\n']


@pytest.mark.parametrize(
    ("build", "refusal"),
    [
        (lambda ps: ps.add_script("Get-Process"), "PowerShell script that is not the mailops bootstrap ('Get-Process')"),
        (lambda ps: ps.add_cmdlet("Get-Process"), "the command 'Get-Process' (only a script runs here)"),
        (lambda ps: ps.add_script("one").add_statement().add_script("two"), "a pipeline of 2 commands (only one script runs here)"),
        (lambda ps: ps.add_script("param($a) $a").add_argument("x"), "a script with arguments or parameters"),
    ],
    ids=["other-script", "cmdlet", "two-statements", "arguments"],
)
def test_any_other_pipeline_fails_and_says_the_simulator_does_not_run_it(
    fleet: Any, build: Callable[[PowerShell], Any], refusal: str
) -> None:
    running = model_fleet(fleet)
    with RunspacePool(wsman(running, "relay01")) as pool:
        ps = PowerShell(pool)
        build(ps)
        output = ps.invoke()
    assert output == [] and ps.had_errors and ps.state == PSInvocationState.FAILED
    assert [str(error) for error in ps.streams.error] == [f"not supported by the simulator: {refusal}"]
    assert cast(Host, running.hosts["relay01"]).dump()["observes"] == 0


def test_a_bootstrap_that_refuses_its_input_fails_the_pipeline_with_its_error(fleet: Any) -> None:
    running = model_fleet(fleet)
    script, _lines = bootstrap(OBSERVE)
    with RunspacePool(wsman(running, "relay01")) as pool:
        ps = PowerShell(pool)
        ps.add_script(script)
        ps.invoke(input=lines(json.dumps({"agent": "Write-Output 'not the agent'", "request": "e30="})))
    assert ps.state == PSInvocationState.FAILED
    [error] = ps.streams.error
    assert str(error) == "mailops.iis_smtp bootstrap: the agent on stdin does not match the hash on the command line"
    assert error.fq_error == "RuntimeException"


def test_psrp_the_collection_does_not_need_is_refused(fleet: Any) -> None:
    running = fleet(ScriptedHost("relay01"))
    with RunspacePool(wsman(running, "relay01")) as pool:
        with pytest.raises(WSManFaultError, match="not supported by the simulator: PSRP message SetMaxRunspaces"):
            pool.max_runspaces = 2
        with pytest.raises(WSManFaultError, match="not supported by the simulator: PSRP message GetCommandMetadata"):
            pool.get_command_metadata("Get-*")
        with pytest.raises(WSManFaultError, match="not supported by the simulator: action .*/Disconnect"):
            pool.disconnect()
    with pytest.raises(WSManFaultError, match="not supported by the simulator: resource URI http://schemas.microsoft.com/powershell/JEA"):
        RunspacePool(wsman(running, "relay01"), configuration_name="JEA").open()


def test_a_stopped_pipeline_is_forgotten_as_a_signalled_command_is(fleet: Any) -> None:
    running = fleet(ScriptedHost("relay01"))
    with RunspacePool(wsman(running, "relay01")) as pool:
        ps = PowerShell(pool)
        ps.add_script("the script")
        ps.invoke()
        # What Ansible's psrp connection does to the previous pipeline before it runs the next one.
        ps.state = PSInvocationState.RUNNING
        ps.stop()
        with pytest.raises(WSManFaultError) as caught:
            pool.shell.receive("stdout", command_id=str(ps.id).upper())
    assert caught.value.code == SHELL_NOT_FOUND and "was not found" in str(caught.value.reason)


# ------------------------------------------------------------------ limits


def test_the_26th_runspace_pool_of_a_user_gets_the_plugin_quota_fault(fleet: Any) -> None:
    running = fleet(ScriptedHost("relay01", auth="basic", scheme="https"))
    pools = [RunspacePool(wsman(running, "relay01")) for _number in range(25)]
    for pool in pools:
        pool.open()
    with pytest.raises(WSManFaultError) as caught:
        RunspacePool(wsman(running, "relay01")).open()
    assert caught.value.code == QUOTA_MAX_SHELLS_PPQ
    assert "This user is allowed a maximum number of 25 concurrent shells" in str(caught.value.reason)
    # The service's own quota still counts every shell: 25 pools and 5 cmd shells make its 30.
    protocol = running.protocol("relay01")
    for _number in range(5):
        protocol.open_shell()
    with pytest.raises(Exception, match="maximum number of concurrent shells for this user"):
        protocol.open_shell()
    pools[0].close()
    RunspacePool(wsman(running, "relay01")).open()


def test_the_microsoft_powershell_quotas_are_windows_defaults() -> None:
    assert (WINDOWS_DEFAULTS.psrp_max_shells_per_user, WINDOWS_DEFAULTS.psrp_max_commands_per_shell) == (25, 1000)


def test_a_shell_runs_its_quota_of_pipelines_at_once_and_refuses_one_more(fleet: Any) -> None:
    # 1,000 by default (above); a thousand round trips would only make the test slow.
    running = fleet(ScriptedHost("relay01"), limits=WinrmLimits(psrp_max_commands_per_shell=5))
    with RunspacePool(wsman(running, "relay01")) as pool:
        pipelines = []
        for _number in range(5):
            ps = PowerShell(pool)
            ps.add_script("the script")
            ps.begin_invoke()
            pipelines.append(ps)
        extra = PowerShell(pool)
        extra.add_script("the script")
        with pytest.raises(WSManFaultError) as caught:
            extra.begin_invoke()
        assert caught.value.code == QUOTA_MAX_COMMANDS_PER_SHELL_PPQ
        assert "maximum number of concurrent commands per shell has been exceeded" in str(caught.value.reason)
        # A pipeline that is stopped gives its place back (Ansible stops each one before the next).
        pipelines[0].end_invoke()
        pipelines[0].state = PSInvocationState.RUNNING
        pipelines[0].stop()
        again = PowerShell(pool)
        again.add_script("the script")
        assert again.invoke() == ["(script)|the script"]


def test_every_pipeline_holds_an_operation_until_its_pool_is_closed(fleet: Any) -> None:
    running = fleet(ScriptedHost("relay01"), limits=WinrmLimits(max_operations_per_user=3))
    with RunspacePool(wsman(running, "relay01")) as pool:
        for _number in range(2):
            ps = PowerShell(pool)
            ps.add_script("the script")
            ps.invoke()
            ps.state = PSInvocationState.RUNNING
            ps.stop()
        ps = PowerShell(pool)
        ps.add_script("the script")
        with pytest.raises(WSManFaultError) as caught:
            ps.invoke()
        assert "maximum number of 3 concurrent operations" in str(caught.value.reason)
    assert running.simulator.services["relay01"].open_shells == 0


def test_an_idle_runspace_pool_is_deleted_after_its_idle_timeout(fleet: Any) -> None:
    clock = FakeClock()
    running = fleet(ScriptedHost("relay01"), clock=clock)
    pool = RunspacePool(wsman(running, "relay01"))
    pool.open()
    clock.advance(7200)
    ps = PowerShell(pool)
    ps.add_script("the script")
    assert ps.invoke() == ["(script)|the script"]
    clock.advance(7200.001)
    with pytest.raises(WSManFaultError) as caught:
        PowerShell(pool).add_script("the script").invoke()
    assert caught.value.code == SHELL_NOT_FOUND and "the shell was not found on the server" in str(caught.value.reason)
    assert running.simulator.services["relay01"].open_shells == 0


def test_a_psrp_envelope_over_max_envelope_size_is_a_bare_413(fleet: Any) -> None:
    running = fleet(ScriptedHost("relay01", auth="basic", scheme="https"))
    # pypsrp fragments to the envelope size it is told; told 1 MB, it sends what Windows refuses.
    with RunspacePool(wsman(running, "relay01", max_envelope_size=1024 * 1024)) as pool:
        ps = PowerShell(pool)
        ps.add_script("the script")
        with pytest.raises(WinRMTransportError) as caught:
            ps.invoke(input=lines("x" * 600_000))
    assert caught.value.code == 413 and caught.value.response_text == ""
