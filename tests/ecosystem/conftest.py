"""Fixtures for the ecosystem tests: the Galaxy tarball and its installed copy.

What users get is the tarball ``ansible-galaxy collection build`` makes, not
this working tree. The tarball is built once per test session and installed
into a temporary collections path, so the tests can check what ships and run
the installed copy, and nothing else, against the simulator.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

# The simulator fixture of the end-to-end harness, for the tests that run the installed copy.
from tests.e2e.conftest import sim  # noqa: F401  # pylint: disable=unused-import
from tests.ecosystem.publish import publish_venv

REPO_ROOT = Path(__file__).resolve().parents[2]
BIN_DIR = Path(sys.executable).parent


def tool(name: str) -> str:
    """A command of the interpreter's own virtualenv (e.g. ansible-galaxy)."""
    return str(BIN_DIR / name)


def clean_env(**extra: str) -> dict[str, str]:
    """Environment without user Ansible configuration, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    env["PATH"] = f"{BIN_DIR}{os.pathsep}{os.environ.get('PATH', '')}"
    env["ANSIBLE_NOCOLOR"] = "1"
    env.update(extra)
    return env


def run(cmd: list[str], *, cwd: Path | None = None, env: dict[str, str] | None = None,
        timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """Run a command and fail the test with its output if it fails."""
    proc = subprocess.run(cmd, cwd=cwd, env=env if env is not None else clean_env(),
                          capture_output=True, text=True, timeout=timeout, check=False)
    if proc.returncode != 0:
        pytest.fail(f"{' '.join(cmd)} exited {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}")
    return proc


@pytest.fixture(scope="session")
def galaxy_tarball(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The collection tarball, built from this working tree as a release would be."""
    out = tmp_path_factory.mktemp("galaxy-build")
    home = tmp_path_factory.mktemp("galaxy-home")
    run([tool("ansible-galaxy"), "collection", "build", "--output-path", str(out), str(REPO_ROOT)],
        env=clean_env(ANSIBLE_HOME=str(home)))
    tarballs = sorted(out.glob("mailops-iis_smtp-*.tar.gz"))
    assert len(tarballs) == 1, tarballs
    return tarballs[0]


@pytest.fixture(scope="session")
def installed_collections(galaxy_tarball: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A collections path holding only the collection installed from the tarball."""
    root = tmp_path_factory.mktemp("installed")
    home = tmp_path_factory.mktemp("install-home")
    run([tool("ansible-galaxy"), "collection", "install", "--offline", "--no-deps",
         "-p", str(root), str(galaxy_tarball)],
        env=clean_env(ANSIBLE_HOME=str(home)))
    assert (root / "ansible_collections" / "mailops" / "iis_smtp" / "MANIFEST.json").is_file()
    return root


@pytest.fixture(scope="session")
def publish_bin() -> Path:
    """bin/ of .venv-publish: galaxy-importer, antsibull-docs, Sphinx, pandoc (built on first use)."""
    return publish_venv() / "bin"


def publish_env(publish_bin: Path, **extra: str) -> dict[str, str]:
    """clean_env with the publishing tools first on PATH (they call ansible-doc, ansible-lint by name)."""
    env = clean_env(**extra)
    env["PATH"] = f"{publish_bin}{os.pathsep}{env['PATH']}"
    return env
