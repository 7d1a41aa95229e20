"""The changelog is valid, current, and names everything users get.

``antsibull-changelog lint`` checks the fragments; regenerating CHANGELOG.rst
from changelogs/changelog.yaml must give the committed file; and every
plugin, role and playbook in the collection must appear in some release.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import yaml

from tests.ecosystem.conftest import REPO_ROOT, run, tool
from tests.ecosystem.test_ansible_doc import documented_plugins, roles


def test_antsibull_changelog_lint_passes() -> None:
    proc = run([tool("antsibull-changelog"), "lint", "-v"], cwd=REPO_ROOT)
    assert "ERROR" not in proc.stdout + proc.stderr


def test_changelog_rst_is_generated_from_changelog_yaml(tmp_path: Path) -> None:
    for name in ("galaxy.yml", "CHANGELOG.rst"):
        shutil.copy(REPO_ROOT / name, tmp_path / name)
    shutil.copytree(REPO_ROOT / "changelogs", tmp_path / "changelogs",
                    ignore=shutil.ignore_patterns(".plugin-cache.yaml"))
    (tmp_path / "CHANGELOG.rst").unlink()
    run([tool("antsibull-changelog"), "generate"], cwd=tmp_path)
    assert (tmp_path / "CHANGELOG.rst").read_text() == (REPO_ROOT / "CHANGELOG.rst").read_text(), \
        "CHANGELOG.rst is stale: run `antsibull-changelog generate`"


def released(changelog: dict[str, Any]) -> set[tuple[str, str]]:
    """(type, name) of every module, plugin, role and playbook in any release."""
    names: set[tuple[str, str]] = set()
    for release in (changelog.get("releases") or {}).values():
        names |= {("module", m["name"]) for m in release.get("modules") or []}
        for kind, entries in (release.get("plugins") or {}).items():
            names |= {(kind, e["name"]) for e in entries}
        for kind, entries in (release.get("objects") or {}).items():
            names |= {(kind, e["name"]) for e in entries}
    return names


def pending(changelog: dict[str, Any]) -> set[tuple[str, str]]:
    """(type, name) that fragments not yet in a release announce (``add plugin.X`` / ``add object.X``)."""
    done = {f for release in (changelog.get("releases") or {}).values() for f in release.get("fragments") or []}
    names: set[tuple[str, str]] = set()
    for path in (REPO_ROOT / "changelogs" / "fragments").glob("*.yml"):
        if path.name in done:
            continue
        for key, entries in (yaml.safe_load(path.read_text()) or {}).items():
            if key.startswith(("add plugin.", "add object.")):
                names |= {(key.rsplit(".", 1)[1], e["name"]) for e in entries}
    return names


def test_everything_shipped_is_in_a_release_or_announced_for_the_next() -> None:
    changelog = yaml.safe_load((REPO_ROOT / "changelogs" / "changelog.yaml").read_text())
    shipped = set(documented_plugins(REPO_ROOT))
    shipped |= {("role", r) for r in roles(REPO_ROOT)}
    shipped |= {("playbook", p.stem) for p in (REPO_ROOT / "playbooks").glob("*.yml")}
    assert {("module", "virtual_server"), ("callback", "fleet_report"), ("role", "virtual_servers")} <= shipped
    assert sorted(shipped - released(changelog) - pending(changelog)) == []


def test_release_matches_galaxy_version() -> None:
    galaxy = yaml.safe_load((REPO_ROOT / "galaxy.yml").read_text())
    changelog = yaml.safe_load((REPO_ROOT / "changelogs" / "changelog.yaml").read_text())
    assert galaxy["version"] in changelog["releases"]
