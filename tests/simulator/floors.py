"""Ansible's own Windows tasks, answered as Windows would answer them, for the benchmark's floors.

Two things other than the collection's agent are served, and nothing else:

- ``ansible.builtin.raw`` running the no-op ``exit 0`` (the winrm connection
  sends it as ``PowerShell ... -EncodedCommand <exit 0>``): no output, exit 0;
- a PowerShell module through Ansible's module bootstrap
  (``bootstrap_wrapper.ps1`` on the command line, its manifest and the
  exec wrapper's input on stdin), for ``ansible.windows.win_ping`` only:
  stdin is read to the end, as the bootstrap reads it, and the answer is
  the module's JSON, as Windows prints it.

Nothing is executed: the simulator only recognises what arrives and records
it. Anything else stays refused by the model.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

NOOP_SCRIPTS = ("exit 0",)
# Lines only Ansible's bootstrap_wrapper.ps1 has: it reads its manifest up to a line of four NULs.
_MODULE_BOOTSTRAP_MARKS = ('[string]::Equals($in, "`0`0`0`0")', "ConvertFrom-Json -InputObject $codeJson")
_END_OF_MANIFEST = b"\0\0\0\0"
WIN_PING = "win_ping"


def answer(script: str, read_stdin: Callable[[], bytes]) -> bytes | None:
    """The stdout of a floor task (its exit code is 0), or None when the script is not one."""
    if script.strip() in NOOP_SCRIPTS:
        return b""
    if all(mark in script for mark in _MODULE_BOOTSTRAP_MARKS):
        return _module(read_stdin())
    return None


def _module(stdin: bytes) -> bytes | None:
    manifest, sep, exec_input = stdin.partition(_END_OF_MANIFEST)
    if not sep:
        return None
    try:
        bootstrap = json.loads(manifest)
        execution = json.loads(exec_input)
    except ValueError:
        return None
    if not isinstance(bootstrap, dict) or bootstrap.get("name") != "exec_wrapper":
        return None
    scripts = execution.get("scripts", {}) if isinstance(execution, dict) else {}
    if not any(str(name).rsplit(".", 2)[-2:] == [WIN_PING, "ps1"] for name in scripts):
        return None
    data = _module_arg(execution, "data", "pong")
    result = {"changed": False, "invocation": {"module_args": {"data": data}}, "ping": data}
    return json.dumps(result).encode() + b"\r\n"


def _module_arg(execution: dict[str, Any], name: str, default: str) -> str:
    for action in execution.get("actions", []):
        params = action.get("params", {}) if isinstance(action, dict) else {}
        args = params.get("ModuleArgs") or params.get("module_args") or {}
        if isinstance(args, dict) and isinstance(args.get(name), str):
            return str(args[name])
    return default
