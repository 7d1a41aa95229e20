"""ansible-lint in a user's own project checks the arguments of this collection's tasks.

ansible-lint's args rule loads an action-backed module's action plugin and
validates a task's arguments by running that file's main() with a stand-in
AnsibleModule (a file without main() is skipped). So the actions' argument
specs must reach ansible-lint through the installed collection, and they
must be the specs the module documentation is checked against.
"""

from __future__ import annotations

import ast
import subprocess
from pathlib import Path
from typing import Any

import pytest

from ansible_collections.mailops.iis_smtp.plugins.plugin_utils import _args, _merge
from tests.ecosystem.conftest import REPO_ROOT, clean_env, tool

ACTION_SPECS = {"virtual_server": _args.ENFORCE_SPEC, "virtual_server_info": _args.INFO_SPEC,
                "fleet_report_merge": _merge.MERGE_SPEC}

USER_PLAYBOOK = """---
- name: Keep the relays running
  hosts: smtp_servers
  gather_facts: false
  tasks:
    - name: Start every virtual server
      mailops.iis_smtp.virtual_server:
        state: {state}
        timeout: {timeout}
"""


def lint(project: Path, installed: Path) -> tuple[int, str]:
    proc = subprocess.run([tool("ansible-lint"), "--offline", "--nocolor", "site.yml"], cwd=project,
                          env=clean_env(ANSIBLE_COLLECTIONS_PATH=str(installed), ANSIBLE_HOME=str(project / ".home")),
                          capture_output=True, text=True, timeout=300, check=False)
    return proc.returncode, proc.stdout + proc.stderr


@pytest.mark.parametrize(("state", "timeout", "finding"), [
    ("running", "60", "args[module]: value of state must be one of: started, stopped, paused, got: running"),
    ("started", "soon", "args[module]: argument 'timeout' is of type"),
    ("started", "60", None),
    # A template is the user's business at run time, as for builtin modules.
    ('"{{ wanted_state }}"', "60", None),
])
def test_ansible_lint_reports_a_wrong_option_value(installed_collections: Path, tmp_path: Path, state: str,
                                                   timeout: str, finding: str | None) -> None:
    (tmp_path / "site.yml").write_text(USER_PLAYBOOK.format(state=state, timeout=timeout))
    rc, output = lint(tmp_path, installed_collections)
    if finding is None:
        assert rc == 0 and "args[" not in output, output
    else:
        assert finding in output, output
        assert "site.yml:6" in output, output


def module_main_spec(path: Path) -> dict[str, Any]:
    """The argument_spec literal that a documentation module's main() passes to AnsibleModule."""
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "AnsibleModule":
            for keyword in node.keywords:
                if keyword.arg == "argument_spec":
                    return dict(ast.literal_eval(keyword.value))
    raise AssertionError(f"{path} passes no argument_spec to AnsibleModule")


@pytest.mark.parametrize("name", sorted(ACTION_SPECS))
def test_documentation_module_spec_is_the_actions_spec(name: str) -> None:
    # ansible-test validate-modules checks the documentation against the module's spec.
    assert module_main_spec(REPO_ROOT / "plugins" / "modules" / f"{name}.py") == ACTION_SPECS[name]


def test_every_action_is_covered() -> None:
    assert sorted(p.stem for p in (REPO_ROOT / "plugins" / "action").glob("*.py")) == sorted(ACTION_SPECS)
