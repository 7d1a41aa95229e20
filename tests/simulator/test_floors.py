"""The benchmark's floors: the simulator answers Ansible's raw no-op and win_ping, and nothing else of Ansible's."""

from __future__ import annotations

import base64
import functools
import json
from pathlib import Path

import ansible.executor.powershell as ansible_powershell

from tests.simulator.model import Fleet, Host
from tests.simulator.test_emulator import encoded, not_supported

ANSIBLE_BOOTSTRAP = (Path(ansible_powershell.__file__).parent / "bootstrap_wrapper.ps1").read_text()


def host_of() -> Host:
    return Fleet.from_dict({"hosts": {"relay01": {}}}).hosts["relay01"]


def module_stdin(script_name: str, module_args: dict[str, str] | None = None) -> bytes:
    manifest = {"name": "exec_wrapper", "script": "# the exec wrapper", "params": {}}
    execution = {"scripts": {script_name: {"script": "# the module", "path": script_name}},
                 "actions": [{"name": "module_wrapper.ps1", "params": {"ModuleArgs": module_args or {}}}]}
    return f"{json.dumps(manifest)}\n\0\0\0\0\n{json.dumps(execution)}".encode()


def test_raw_exit_0_is_a_silent_success_and_changes_nothing() -> None:
    host = host_of()
    outcome = host.run_command("PowerShell", encoded("exit 0"))
    assert (outcome.stdout, outcome.stderr, outcome.exit_code) == (b"", b"", 0)
    dump = host.dump()
    assert (dump["floor_commands"], dump["observes"], dump["applies"], dump["operations"]) == (1, 0, 0, [])


def test_other_raw_commands_stay_refused() -> None:
    for script in ("exit 1", "Get-Service SMTPSVC", "exit 0; Stop-Service SMTPSVC"):
        assert "not the mailops bootstrap" in not_supported(host_of().run_command("PowerShell", encoded(script)))


def test_win_ping_through_ansibles_module_bootstrap_answers_pong() -> None:
    host = host_of()
    stdin = module_stdin("ansible_collections.ansible.windows.plugins.modules.win_ping.ps1", {"data": "hello"})
    outcome = host.run_command("PowerShell", encoded(ANSIBLE_BOOTSTRAP), lambda: stdin)
    assert outcome.exit_code == 0 and outcome.stderr == b""
    assert json.loads(outcome.stdout) == {"changed": False, "invocation": {"module_args": {"data": "hello"}},
                                          "ping": "hello"}
    assert host.dump()["floor_commands"] == 1


def test_any_other_module_or_a_malformed_manifest_is_refused() -> None:
    other = module_stdin("ansible_collections.ansible.windows.plugins.modules.win_service.ps1")
    for stdin in (other, b"not json\n\0\0\0\0\n{}", module_stdin("win_ping.ps1").replace(b"\0\0\0\0", b"")):
        outcome = host_of().run_command("PowerShell", encoded(ANSIBLE_BOOTSTRAP), functools.partial(bytes, stdin))
        assert "not the mailops bootstrap" in not_supported(outcome)


def test_the_floor_scripts_are_not_mistaken_for_the_agent() -> None:
    # A bootstrap-looking script that is only base64 of something else is still refused.
    script = base64.b64encode(b"exit 0").decode()
    assert "not the mailops bootstrap" in not_supported(host_of().run_command("PowerShell", encoded(script)))
