"""An execution environment can be built with this collection.

No container engine exists here, so the image is not built. Instead:
``ansible-builder create`` must turn the EE definition published in
docs/awx.md (on the awx-ee base image) into a complete build context, and the
introspection script that context would run inside the image, run here on the
installed collection with the context's own user files, must give the Python
packages of every authentication method (meta/ee-requirements.txt) and the
Kerberos system packages (meta/ee-bindep.txt), through
meta/execution-environment.yml.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from bindep.depends import Depends  # type: ignore[import-untyped]  # bindep ships no type information

from tests.ecosystem.conftest import REPO_ROOT, clean_env, run, tool

AWX_EE = "quay.io/ansible/awx-ee"
# What each authentication method needs, as an EE installs it.
PYTHON_NEEDS = {"pywinrm[kerberos,credssp]", "pypsrp[kerberos,credssp]", "pyspnego"}


def documented_ee_definition() -> dict[str, Any]:
    """The execution-environment.yml example users copy from docs/awx.md."""
    blocks = re.findall(r"```yaml\n(.*?)```", (REPO_ROOT / "docs" / "awx.md").read_text(), re.DOTALL)
    definitions = [yaml.safe_load(b) for b in blocks if re.search(r"^version: 3$", b, re.MULTILINE)]
    assert len(definitions) == 1, "docs/awx.md must show exactly one version 3 EE definition"
    return dict(definitions[0])


def requirement_names(lines: list[str]) -> set[str]:
    """Requirement names with their extras (``pywinrm[credssp,kerberos]`` as written), lowercase."""
    names = set()
    for line in lines:
        line = line.split("#", 1)[0].strip()
        if line:
            names.add(re.split(r"[<>=!~ ;]", line, maxsplit=1)[0].lower())
    return names


def bindep_packages(text: str, profiles: list[str]) -> set[str]:
    """The packages bindep installs for these platform and profile selectors."""
    return {rule[0] for rule in Depends(text).active_rules(profiles)}


RPM = ["platform:rpm", "platform:redhat", "platform:centos", "platform:centos-9"]
DPKG = ["platform:dpkg", "platform:debian", "platform:ubuntu"]


def test_collection_ee_metadata_points_at_existing_files() -> None:
    meta = yaml.safe_load((REPO_ROOT / "meta" / "execution-environment.yml").read_text())
    assert meta["dependencies"] == {"python": "meta/ee-requirements.txt", "system": "meta/ee-bindep.txt"}
    for path in meta["dependencies"].values():
        assert (REPO_ROOT / path).is_file(), path
    names = requirement_names((REPO_ROOT / "meta" / "ee-requirements.txt").read_text().splitlines())
    assert names >= PYTHON_NEEDS, names


@pytest.mark.parametrize(("platform", "runtime", "build"), [
    (RPM, {"krb5-workstation", "krb5-libs"}, {"krb5-devel", "gcc", "python3-devel"}),
    (DPKG, {"krb5-user", "libkrb5-3"}, {"libkrb5-dev", "gcc", "python3-dev"}),
])
def test_bindep_gives_kinit_at_run_time_and_compilers_only_to_build(
        platform: list[str], runtime: set[str], build: set[str]) -> None:
    text = (REPO_ROOT / "meta" / "ee-bindep.txt").read_text()
    # ansible-builder installs the [compile] profile in its builder stage only.
    assert bindep_packages(text, platform) == runtime
    assert bindep_packages(text, [*platform, "compile"]) == runtime | build


def build_context(tmp_path: Path) -> tuple[dict[str, Any], Path]:
    definition = documented_ee_definition()
    ee_file = tmp_path / "execution-environment.yml"
    ee_file.write_text(yaml.safe_dump(definition, sort_keys=False))
    context = tmp_path / "context"
    run([tool("ansible-builder"), "create", "--file", str(ee_file), "--context", str(context),
         "--output-filename", "Containerfile"], cwd=tmp_path, env=clean_env(HOME=str(tmp_path)))
    return definition, context


def test_ansible_builder_create_makes_a_build_context_on_awx_ee(tmp_path: Path) -> None:
    definition, context = build_context(tmp_path)
    assert definition["images"]["base_image"]["name"].startswith(AWX_EE + ":")
    assert [c["name"] for c in definition["dependencies"]["galaxy"]["collections"]] == ["mailops.iis_smtp"]
    containerfile = (context / "Containerfile").read_text()
    assert f'ARG EE_BASE_IMAGE="{definition["images"]["base_image"]["name"]}"' in containerfile
    assert "FROM $EE_BASE_IMAGE AS base" in containerfile
    assert "ansible-galaxy collection install" in containerfile
    assert "introspect.py introspect" in containerfile
    assert "install-from-bindep" in containerfile
    galaxy = yaml.safe_load((context / "_build" / "requirements.yml").read_text())
    assert [c["name"] for c in galaxy["collections"]] == ["mailops.iis_smtp"]
    for script in ("introspect.py", "assemble", "install-from-bindep", "check_ansible"):
        assert (context / "_build" / "scripts" / script).is_file(), script


def test_builder_introspection_gives_the_image_every_authentication_method(
        installed_collections: Path, tmp_path: Path) -> None:
    _definition, context = build_context(tmp_path)
    pip_out, bindep_out = tmp_path / "requirements.txt", tmp_path / "bindep.txt"
    # The call the image build makes after installing the collections, with
    # the user's own files from the context.
    args = [sys.executable, str(context / "_build" / "scripts" / "introspect.py"), "introspect",
            str(installed_collections), "--write-pip", str(pip_out), "--write-bindep", str(bindep_out)]
    for option, name in (("--user-pip", "requirements.txt"), ("--user-bindep", "bindep.txt")):
        if (context / "_build" / name).is_file():
            args += [option, str(context / "_build" / name)]
    run(args, cwd=tmp_path)
    pip_lines = pip_out.read_text().splitlines()
    assert requirement_names(pip_lines) >= PYTHON_NEEDS, pip_lines
    assert all("mailops.iis_smtp" in line for line in pip_lines if line.strip()), pip_lines
    bindep_text = bindep_out.read_text()
    assert {"krb5-workstation", "krb5-libs"} <= bindep_packages(bindep_text, RPM), bindep_text
    assert {"krb5-devel", "gcc", "python3-devel"} <= bindep_packages(bindep_text, [*RPM, "compile"]), bindep_text
