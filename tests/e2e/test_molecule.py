"""The molecule scenario (extensions/molecule/default) runs green from start to end.

Molecule's own steps are the assertions: converge applies the role to the
simulated fleet, idempotence fails on any changed task in a second converge,
and verify reads every instance back through ``virtual_server_info`` and
checks the simulator's operation log.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

from tests.e2e.conftest import REPO_ROOT

ANSI = re.compile(r"\x1b\[[0-9;]*m|\x1b\]8;;[^\x1b]*\x1b\\")


def stop_leftover_simulator(ephemeral: Path) -> None:
    """Stop the simulator create started if molecule itself never reached destroy (killed, timed out)."""
    pidfile = ephemeral / "simulator" / "pid"
    if pidfile.is_file():
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.kill(int(pidfile.read_text().strip()), signal.SIGTERM)


def test_molecule_default_scenario(tmp_path: Path) -> None:
    # Molecule's scenario state, the simulator's files and Ansible's home live in
    # this test's directory: never in ~/.ansible, where another run would share them.
    ephemeral = tmp_path / "molecule"
    env = dict(os.environ)
    env.pop("ANSIBLE_CONFIG", None)
    env.update({
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
        "ANSIBLE_LOCAL_TEMP": str(tmp_path / "ansible-tmp"),
        "ANSIBLE_HOME": str(tmp_path / "ansible-home"),
        "MOLECULE_EPHEMERAL_DIRECTORY": str(ephemeral),
        "NO_COLOR": "1",
        "ANSIBLE_NOCOLOR": "1",
    })
    try:
        proc = subprocess.run(
            [str(Path(sys.executable).parent / "molecule"), "test", "--scenario-name", "default"],
            cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600, check=False,
        )
    finally:
        stop_leftover_simulator(ephemeral)
    output = ANSI.sub("", proc.stdout + proc.stderr)
    assert proc.returncode == 0, output[-6000:]
    for step in ("create", "converge", "idempotence", "verify", "destroy"):
        assert re.search(rf"{step}: Executed: Successful", output), f"molecule step {step} did not succeed\n{output[-4000:]}"
