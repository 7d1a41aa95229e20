"""The ansible.windows collection, for the benchmark's PowerShell-module floor (win_ping).

It ships in the ``ansible`` package on PyPI; only its ``ansible.windows``
directory is taken from the wheel, pinned by version and SHA-256, into the
virtual environment (never the repository).
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ANSIBLE_VERSION = "12.3.0"
WHEEL = f"ansible-{ANSIBLE_VERSION}-py3-none-any.whl"
WHEEL_SHA256 = "cd156f82fa87f7a899212b0efa9f7ca3a24d609212de9f78428a572eb01e5414"
MEMBER = "ansible_collections/ansible/windows/"


def collections_dir() -> Path:
    """Where the collection goes: beside the running interpreter's virtual environment."""
    return Path(sys.prefix) / "bench-collections"


def ensure_ansible_windows() -> Path:
    """A collections path holding ansible.windows (downloaded once), returned."""
    root = collections_dir()
    if (root / MEMBER / "plugins" / "modules" / "win_ping.ps1").is_file():
        return root
    cache = Path(sys.prefix) / "bench-cache"
    cache.mkdir(parents=True, exist_ok=True)
    wheel = cache / WHEEL
    if not wheel.is_file() or _sha256(wheel) != WHEEL_SHA256:
        subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary", ":all:",
                        "-d", str(cache), f"ansible=={ANSIBLE_VERSION}"], check=True)
        if _sha256(wheel) != WHEEL_SHA256:
            raise SystemExit(f"{wheel}: SHA-256 is not the pinned {WHEEL_SHA256}")
    staging = root.with_name(root.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    with zipfile.ZipFile(wheel) as archive:
        for name in archive.namelist():
            if name.startswith(MEMBER) and not name.endswith("/"):
                archive.extract(name, staging)
    shutil.rmtree(root, ignore_errors=True)
    staging.rename(root)
    return root


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
