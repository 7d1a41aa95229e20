"""What users install is what is tested.

The Galaxy tarball must carry the collection and nothing of the development
set-up (simulator, tests, tooling), and the copy installed from it must work
on its own: ``virtual_server_info`` and ``virtual_server`` run through
``ansible-playbook`` against the simulator with ``ANSIBLE_COLLECTIONS_PATH``
naming only the installed copy.
"""

from __future__ import annotations

import json
import tarfile
from pathlib import Path
from typing import Any

from tests.ecosystem.conftest import REPO_ROOT, clean_env, run, tool

# Anything under these (or equal to them) in the tarball is a packaging bug.
MUST_NOT_SHIP = (
    "tests", ".venv", ".git", ".ci", "Makefile", "pyproject.toml", ".ansible-lint",
    ".gitignore", ".pytest_cache", ".mypy_cache", ".ruff_cache", ".coverage", "htmlcov",
    "molecule", "extensions", ".molecule", "changelogs/.plugin-cache.yaml", "changelogs/fragments",
    "demo-output", "reports", "build",
)
# Everything in the tarball must sit under one of these top-level names, so a
# new scratch folder or config file at the root cannot slip in unnoticed.
ALLOWED_TOP_LEVEL = {
    "MANIFEST.json", "FILES.json", "README.md", "CHANGELOG.rst", "LICENSE", "COPYING",
    "requirements.txt", "bindep.txt", "meta", "plugins", "roles", "playbooks", "docs", "changelogs",
}
MUST_SHIP = (
    "MANIFEST.json", "FILES.json", "meta/runtime.yml", "meta/execution-environment.yml",
    "meta/ee-requirements.txt", "meta/ee-bindep.txt", "roles/virtual_servers/README.md",
    "docs/docsite/extra-docs.yml", "docs/docsite/links.yml", "docs/docsite/rst/awx.rst",
    "plugins/action/fleet_report_merge.py", "plugins/modules/fleet_report_merge.py", "playbooks/merge_reports.yml",
    "requirements.txt", "CHANGELOG.rst", "changelogs/changelog.yaml",
    "plugins/action/virtual_server.py", "plugins/action/virtual_server_info.py",
    "plugins/modules/virtual_server.py", "plugins/modules/virtual_server_info.py",
    "plugins/callback/fleet_report.py", "roles/virtual_servers/meta/argument_specs.yml",
    "playbooks/compliance.yml", "playbooks/remediate.yml",
    "docs/getting-started.md", "docs/ci-cd.md", "docs/awx.md",
)


def tarball_members(tarball: Path) -> list[str]:
    with tarfile.open(tarball) as archive:
        return [m.name.removeprefix("./").rstrip("/") for m in archive.getmembers()]


def shipped_violations(members: list[str]) -> list[str]:
    """Members that are development-only, by the MUST_NOT_SHIP prefixes."""
    bad = []
    for name in members:
        parts = name.split("/")
        cache_or_venv = "__pycache__" in parts or name.endswith((".pyc", ".tar.gz")) or parts[0].startswith(".venv")
        if cache_or_venv or parts[0] not in ALLOWED_TOP_LEVEL or any(name == p or name.startswith(p + "/") for p in MUST_NOT_SHIP):
            bad.append(name)
    return bad


def test_violation_filter_catches_development_files() -> None:
    # Guards the guard: a filter that matched nothing would pass any tarball.
    assert shipped_violations(["tests/simulator/server.py", ".venv-core-latest/x", "Makefile",
                               "plugins/x/__pycache__/a.pyc", "roles/r/tasks/main.yml", "bench-output/r.json",
                               "extensions/molecule/default/molecule.yml", "extensions",
                               "changelogs/fragments/x.yml", "changelogs/changelog.yaml"]) == [
        "tests/simulator/server.py", ".venv-core-latest/x", "Makefile", "plugins/x/__pycache__/a.pyc",
        "bench-output/r.json", "extensions/molecule/default/molecule.yml", "extensions",
        "changelogs/fragments/x.yml"]


def empty_directories(tarball: Path) -> list[str]:
    """Directories in the tarball with nothing under them."""
    with tarfile.open(tarball) as archive:
        members = archive.getmembers()
    names = [m.name.removeprefix("./").rstrip("/") for m in members]
    return [d for d, m in zip(names, members, strict=True)
            if m.isdir() and d and not any(n.startswith(d + "/") for n in names)]


def test_tarball_ships_the_collection_and_no_development_files(galaxy_tarball: Path) -> None:
    members = tarball_members(galaxy_tarball)
    assert shipped_violations(members) == []
    assert empty_directories(galaxy_tarball) == []
    assert sorted(set(MUST_SHIP) - set(members)) == []
    # The agent travels with the transport that reads it.
    assert [m for m in members if m.endswith(".ps1")], members
    manifest = json.loads(_member_text(galaxy_tarball, "MANIFEST.json"))
    info = manifest["collection_info"]
    assert (info["namespace"], info["name"]) == ("mailops", "iis_smtp")


def _member_text(tarball: Path, name: str) -> str:
    with tarfile.open(tarball) as archive:
        member = archive.extractfile(name)
        assert member is not None
        return member.read().decode()


def only_installed_copy_env(installed: Path, **extra: str) -> dict[str, str]:
    return clean_env(ANSIBLE_COLLECTIONS_PATH=str(installed), ANSIBLE_COLLECTIONS_SCAN_SYS_PATH="false", **extra)


def test_installed_copy_is_the_only_one_ansible_sees(installed_collections: Path, tmp_path: Path) -> None:
    env = only_installed_copy_env(installed_collections, ANSIBLE_HOME=str(tmp_path / "home"))
    listed = json.loads(run([tool("ansible-galaxy"), "collection", "list", "mailops.iis_smtp",
                             "--format", "json"], env=env, cwd=tmp_path).stdout)
    assert list(listed) == [str(installed_collections / "ansible_collections")]
    doc = json.loads(run([tool("ansible-doc"), "-t", "module", "--json", "mailops.iis_smtp.virtual_server"],
                         env=env, cwd=tmp_path).stdout)
    filename = Path(doc["mailops.iis_smtp.virtual_server"]["doc"]["filename"])
    assert filename.is_relative_to(installed_collections), filename
    assert not filename.resolve().is_relative_to(REPO_ROOT)


SMOKE_SCENARIO: dict[str, Any] = {
    "defaults": {"transition_s": 0.1},
    "hosts": {"smtp1": {"instances": [{"id": 1, "state": "started"},
                                      {"id": 2, "comment": "Relay", "state": "stopped"}]}},
}

SMOKE_PLAY = """
- hosts: all
  gather_facts: false
  tasks:
    - name: before
      mailops.iis_smtp.virtual_server_info:
    - name: enforce
      mailops.iis_smtp.virtual_server:
        instance_states:
          Relay: started
    - name: again
      mailops.iis_smtp.virtual_server:
        instance_states:
          Relay: started
    - name: after
      mailops.iis_smtp.virtual_server_info:
"""


def states_by_id(info_result: dict[str, Any]) -> dict[int, str]:
    return {int(v["id"]): str(v["state"]) for v in info_result["virtual_servers"]}


def test_installed_copy_runs_both_actions_against_the_simulator(installed_collections: Path, sim: Any) -> None:
    fleet = sim(SMOKE_SCENARIO)
    env = only_installed_copy_env(installed_collections, ANSIBLE_HOME=str(fleet.workdir / "ansible-home"))
    run_ = fleet.play(SMOKE_PLAY, env=env)
    state = fleet.stop()
    assert run_.rc == 0, run_.stdout + run_.stderr
    assert states_by_id(run_.result("smtp1", "before")["result"]) == {1: "started", 2: "stopped"}
    assert run_.status("smtp1", "enforce") == "changed"
    assert run_.status("smtp1", "again") == "ok"
    assert states_by_id(run_.result("smtp1", "after")["result"]) == {1: "started", 2: "started"}
    assert {i["id"]: i["state"] for i in state["hosts"]["smtp1"]["instances"]} == {1: "started", 2: "started"}
