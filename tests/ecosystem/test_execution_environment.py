"""An execution environment can be built with this collection.

No container engine exists here, so the image is not built. Instead:
``ansible-builder create`` must turn the EE definition published in
docs/awx.md into a complete build context, and the introspection script that
context would run inside the image, run here on the installed collection,
must find the collection's Python requirements through
meta/execution-environment.yml.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

import yaml

from tests.ecosystem.conftest import REPO_ROOT, clean_env, run, tool


def documented_ee_definition() -> dict[str, Any]:
    """The execution-environment.yml example users copy from docs/awx.md."""
    blocks = re.findall(r"```yaml\n(.*?)```", (REPO_ROOT / "docs" / "awx.md").read_text(), re.DOTALL)
    definitions = [yaml.safe_load(b) for b in blocks if re.search(r"^version: 3$", b, re.MULTILINE)]
    assert len(definitions) == 1, "docs/awx.md must show exactly one version 3 EE definition"
    return dict(definitions[0])


def requirement_names(lines: list[str]) -> set[str]:
    return {re.split(r"[<>=!~\[ ;#]", line.strip(), maxsplit=1)[0].lower() for line in lines
            if line.strip() and not line.lstrip().startswith("#")}


def test_collection_ee_metadata_points_at_existing_files() -> None:
    meta = yaml.safe_load((REPO_ROOT / "meta" / "execution-environment.yml").read_text())
    deps = meta["dependencies"]
    assert deps["python"] == "requirements.txt"
    for path in deps.values():
        assert (REPO_ROOT / path).is_file(), path
    names = requirement_names((REPO_ROOT / "requirements.txt").read_text().splitlines())
    assert {"pywinrm", "pyspnego"} <= names


def test_ansible_builder_create_makes_a_build_context(tmp_path: Path) -> None:
    definition = documented_ee_definition()
    assert definition["dependencies"]["galaxy"]["collections"][0]["name"] == "mailops.iis_smtp"
    ee_file = tmp_path / "execution-environment.yml"
    ee_file.write_text(yaml.safe_dump(definition, sort_keys=False))
    context = tmp_path / "context"
    run([tool("ansible-builder"), "create", "--file", str(ee_file), "--context", str(context),
         "--output-filename", "Containerfile"], cwd=tmp_path, env=clean_env(HOME=str(tmp_path)))

    containerfile = (context / "Containerfile").read_text()
    assert f'ARG EE_BASE_IMAGE="{definition["images"]["base_image"]["name"]}"' in containerfile
    assert "FROM $EE_BASE_IMAGE AS base" in containerfile
    assert "ansible-galaxy collection install" in containerfile
    assert "introspect.py introspect" in containerfile
    galaxy = yaml.safe_load((context / "_build" / "requirements.yml").read_text())
    assert [c["name"] for c in galaxy["collections"]] == ["mailops.iis_smtp"]
    for script in ("introspect.py", "assemble", "install-from-bindep", "check_ansible"):
        assert (context / "_build" / "scripts" / script).is_file(), script


def test_builder_introspection_finds_the_collection_requirements(installed_collections: Path,
                                                                 tmp_path: Path) -> None:
    context = tmp_path / "context"
    ee_file = tmp_path / "execution-environment.yml"
    ee_file.write_text(yaml.safe_dump(documented_ee_definition(), sort_keys=False))
    run([tool("ansible-builder"), "create", "--file", str(ee_file), "--context", str(context)],
        cwd=tmp_path, env=clean_env(HOME=str(tmp_path)))
    written = tmp_path / "requirements-from-collections.txt"
    # The same call the image build makes after installing the collections.
    run([sys.executable, str(context / "_build" / "scripts" / "introspect.py"), "introspect",
         str(installed_collections), "--write-pip", str(written)], cwd=tmp_path)
    lines = written.read_text().splitlines()
    assert {"pywinrm", "pyspnego"} <= requirement_names(lines)
    assert all("mailops.iis_smtp" in line for line in lines if line.strip()), lines
