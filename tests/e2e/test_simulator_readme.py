"""The simulator's documented fault examples load as written, and the faults fire as documented.

YAML 1.1 reads a bare `on` as the boolean true, so a fault example that
writes `on:` unquoted describes a scenario the simulator refuses. The
README's example is started as it stands and read through ansible-playbook.
"""

from __future__ import annotations

import re
from typing import Any

import yaml

from tests.e2e.conftest import REPO_ROOT, play

README = REPO_ROOT / "tests" / "simulator" / "README.md"
FAULT_DOCS = (README, REPO_ROOT / "docs" / "faults.md")
BARE_ON = re.compile(r"(?<![\"'\w])on:")


def yaml_blocks(text: str) -> list[str]:
    return re.findall(r"```yaml\n(.*?)```", text, re.S)


def test_no_fault_example_writes_a_bare_on() -> None:
    for path in FAULT_DOCS:
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if "faults" in path.name or "fault" in line or "{" in line:
                assert not BARE_ON.search(line), f"{path.name}:{number}: quote the key \"on\": {line}"


def test_the_readme_fault_example_runs_as_documented(sim: Any) -> None:
    (example,) = [block for block in yaml_blocks(README.read_text()) if "flaky01" in block]
    scenario = yaml.safe_load(example)
    assert scenario["hosts"]["flaky01"]["faults"]["wsman_fault"] == {"on": "observe"}
    fleet = sim(scenario)
    run = fleet.play(play("    - name: Read\n      mailops.iis_smtp.virtual_server_info:\n      ignore_errors: true\n"))
    state = fleet.stop()
    flaky = run.result("flaky01", "Read")
    assert flaky["status"] == "failed" and flaky["result"]["reason"] == "winrm_fault"
    assert run.result("slow01", "Read")["status"] == "ok"
    assert state["hosts"]["slow01"]["faults_fired"]["delay"] == 1
    assert state["hosts"]["slow01"]["faults_fired"]["agent_output"] == 0, "an apply fault does not fire on a read"
