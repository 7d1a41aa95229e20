"""``requires_ansible`` in meta/runtime.yml says what the tests run on.

The test matrix is the main virtualenv (tests/requirements.txt, the oldest
supported ansible-core) and .venv-core-latest
(tests/requirements-core-latest.txt, the newest). The lower bound must be the
oldest tested minor release, and both pinned versions must satisfy it.
"""

from __future__ import annotations

import re
from pathlib import Path

import yaml
from ansible.release import __version__ as running_core
from packaging.specifiers import SpecifierSet
from packaging.version import Version

from tests.ecosystem.conftest import REPO_ROOT


def pinned_core(requirements: Path) -> Version:
    match = re.search(r"^ansible-core==(\S+)", requirements.read_text(), re.MULTILINE)
    assert match, f"{requirements} pins no ansible-core"
    return Version(match.group(1))


def requires_ansible() -> SpecifierSet:
    return SpecifierSet(yaml.safe_load((REPO_ROOT / "meta" / "runtime.yml").read_text())["requires_ansible"])


def test_tested_cores_satisfy_requires_ansible() -> None:
    spec = requires_ansible()
    oldest = pinned_core(REPO_ROOT / "tests" / "requirements.txt")
    newest = pinned_core(REPO_ROOT / "tests" / "requirements-core-latest.txt")
    assert oldest < newest
    assert oldest in spec and newest in spec
    assert Version(running_core) in spec


def test_lower_bound_is_the_oldest_tested_minor() -> None:
    lower = [s for s in requires_ansible() if s.operator == ">="]
    assert len(lower) == 1
    oldest = pinned_core(REPO_ROOT / "tests" / "requirements.txt")
    assert Version(lower[0].version).release[:2] == oldest.release[:2]
    assert Version(f"{oldest.major}.{oldest.minor - 1}.99") not in requires_ansible()
