"""Make the repository importable as the collection it is.

Ansible finds collection code only under ``ansible_collections/<ns>/<name>``.
The repository root is the collection root, so the tests build that layout in
a temporary directory (a symlink back to the repository), put it first on
``sys.path`` for imports in this process, and export it through
``ANSIBLE_COLLECTIONS_PATH`` for every ``ansible-playbook`` the tests start.
"""

from __future__ import annotations

import atexit
import os
import shutil
import sys
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def _collections_root() -> Path:
    existing = os.environ.get("MAILOPS_TEST_COLLECTIONS")
    if existing and (Path(existing) / "ansible_collections" / "mailops" / "iis_smtp").exists():
        return Path(existing)
    root = Path(tempfile.mkdtemp(prefix="mailops-collections-"))
    target = root / "ansible_collections" / "mailops"
    target.mkdir(parents=True)
    (target / "iis_smtp").symlink_to(REPO_ROOT, target_is_directory=True)
    os.environ["MAILOPS_TEST_COLLECTIONS"] = str(root)
    # rmtree unlinks the symlink and never follows it into the repository.
    atexit.register(shutil.rmtree, root, ignore_errors=True)
    return root


COLLECTIONS_ROOT = _collections_root()
if str(COLLECTIONS_ROOT) not in sys.path:
    sys.path.insert(0, str(COLLECTIONS_ROOT))
os.environ["ANSIBLE_COLLECTIONS_PATH"] = str(COLLECTIONS_ROOT)

# Every test that starts a simulated fleet with the `sim` fixture (tests/e2e,
# and the suites that borrow it) runs over a connection kind; unparametrised,
# the scenario's own.
from tests.e2e.conftest import connection  # noqa: E402, F401  # pylint: disable=unused-import
