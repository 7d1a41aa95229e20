"""``ansible-doc`` works for every plugin the collection ships, and for the role.

Plugins are discovered from ``plugins/`` rather than listed, so a new plugin
without working documentation fails here. Action plugins are documented by a
module file of the same name (as ``ansible.windows`` does for ``win_reboot``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.ecosystem.conftest import REPO_ROOT, clean_env, run, tool

# Plugin directories whose files ansible-doc documents, by ansible-doc type.
DOC_TYPES = {
    "modules": "module", "callback": "callback", "lookup": "lookup", "filter": "filter",
    "test": "test", "inventory": "inventory", "connection": "connection", "become": "become",
    "cache": "cache", "vars": "vars", "strategy": "strategy", "shell": "shell",
}
COLLECTION = "mailops.iis_smtp"


def documented_plugins(root: Path) -> list[tuple[str, str]]:
    """(ansible-doc type, name) for every public plugin file under ``plugins/``."""
    found = []
    for directory, doc_type in DOC_TYPES.items():
        for path in sorted((root / "plugins" / directory).glob("*.py")):
            if not path.name.startswith("_"):
                found.append((doc_type, path.stem))
    return found


def roles(root: Path) -> list[str]:
    return sorted(p.name for p in (root / "roles").iterdir() if (p / "meta" / "argument_specs.yml").is_file())


def doc_env() -> dict[str, str]:
    return clean_env(ANSIBLE_COLLECTIONS_PATH=os.environ["ANSIBLE_COLLECTIONS_PATH"])


def test_every_action_plugin_has_a_documentation_module() -> None:
    actions = {p.stem for p in (REPO_ROOT / "plugins" / "action").glob("*.py")}
    modules = {p.stem for p in (REPO_ROOT / "plugins" / "modules").glob("*.py")}
    assert actions, "no action plugins found"
    assert sorted(actions - modules) == []


def test_the_shipped_plugins_are_all_discovered() -> None:
    # Guards the discovery: an empty parametrisation would pass silently.
    found = documented_plugins(REPO_ROOT)
    assert {("module", "virtual_server"), ("module", "virtual_server_info"), ("callback", "fleet_report")} <= set(found)
    assert "virtual_servers" in roles(REPO_ROOT)


@pytest.mark.parametrize(("doc_type", "name"), documented_plugins(REPO_ROOT))
def test_ansible_doc_renders_plugin(doc_type: str, name: str, tmp_path: Path) -> None:
    fqcn = f"{COLLECTION}.{name}"
    env = doc_env()
    env["ANSIBLE_HOME"] = str(tmp_path)
    text = run([tool("ansible-doc"), "-t", doc_type, fqcn], env=env, cwd=tmp_path)
    assert "[ERROR]" not in text.stderr and "[WARNING]" not in text.stderr, text.stderr
    assert fqcn in text.stdout
    data = json.loads(run([tool("ansible-doc"), "-t", doc_type, "--json", fqcn], env=env, cwd=tmp_path).stdout)
    doc = data[fqcn]["doc"]
    assert doc.get("short_description"), doc
    assert doc.get("description"), doc
    if doc_type == "module":
        assert data[fqcn].get("examples"), f"{fqcn} has no EXAMPLES"
        assert data[fqcn].get("return"), f"{fqcn} has no RETURN"


@pytest.mark.parametrize("name", roles(REPO_ROOT))
def test_ansible_doc_renders_role(name: str, tmp_path: Path) -> None:
    fqcn = f"{COLLECTION}.{name}"
    env = doc_env()
    env["ANSIBLE_HOME"] = str(tmp_path)
    text = run([tool("ansible-doc"), "-t", "role", fqcn], env=env, cwd=tmp_path)
    assert "[ERROR]" not in text.stderr and "[WARNING]" not in text.stderr, text.stderr
    data = json.loads(run([tool("ansible-doc"), "-t", "role", "--json", fqcn], env=env, cwd=tmp_path).stdout)
    main = data[fqcn]["entry_points"]["main"]
    assert main.get("short_description"), main
    assert main.get("options"), "the role documents no variables"
