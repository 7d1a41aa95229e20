"""The molecule scenario (extensions/molecule/default) runs green from start to end.

Molecule's own steps are the assertions: converge applies the role to the
simulated fleet, idempotence fails on any changed task in a second converge,
and verify reads every instance back through ``virtual_server_info`` and
checks the simulator's operation log.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from tests.e2e.conftest import REPO_ROOT

ANSI = re.compile(r"\x1b\[[0-9;]*m|\x1b\]8;;[^\x1b]*\x1b\\")


def test_molecule_default_scenario(tmp_path: Path) -> None:
    env = dict(os.environ)
    env.pop("ANSIBLE_CONFIG", None)
    env.update({
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
        "ANSIBLE_LOCAL_TEMP": str(tmp_path / "ansible-tmp"),
        "NO_COLOR": "1",
        "ANSIBLE_NOCOLOR": "1",
    })
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "molecule"), "test", "--scenario-name", "default"],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600, check=False,
    )
    output = ANSI.sub("", proc.stdout + proc.stderr)
    assert proc.returncode == 0, output[-6000:]
    for step in ("create", "converge", "idempotence", "verify", "destroy"):
        assert re.search(rf"{step}: Executed: Successful", output), f"molecule step {step} did not succeed\n{output[-4000:]}"
