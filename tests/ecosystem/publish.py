"""The publishing tools' virtualenv and the docsite pages made from docs/*.md.

galaxy-importer, antsibull-docs (with the docsite's Sphinx theme) and pandoc
live in .venv-publish (tests/requirements-publish.txt): galaxy-importer pins
an attrs older than the main virtualenv's. It is built on first use and
rebuilt when the requirements change.

The guides are written in Markdown (docs/*.md, what GitHub and Galaxy show);
the Ansible docsite reads reStructuredText from docs/docsite/rst/. Each page
there is pandoc's conversion of one guide under the label the docsite links
by. ``python -m tests.ecosystem.publish`` (``make docsite``) writes them; the
tests check they are current.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import subprocess
import sys
import tempfile
import zlib
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
REQUIREMENTS = REPO_ROOT / "tests" / "requirements-publish.txt"
DOCS = REPO_ROOT / "docs"
DOCSITE_RST = DOCS / "docsite" / "rst"
COLLECTION = "mailops.iis_smtp"
LABEL_PREFIX = f"ansible_collections.{COLLECTION}.docsite."


def publish_venv() -> Path:
    """.venv-publish (or PUBLISH_VENV), built from tests/requirements-publish.txt when missing or stale."""
    venv = Path(os.environ.get("PUBLISH_VENV", REPO_ROOT / ".venv-publish"))
    want = hashlib.sha256(REQUIREMENTS.read_bytes()).hexdigest()
    stamp = venv / ".requirements.sha256"
    # Two runs at once must not build the virtualenv under each other.
    lock_path = Path(tempfile.gettempdir()) / f"mailops-iis_smtp-publish-{zlib.crc32(str(venv).encode())}.lock"
    with open(lock_path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (venv / "bin" / "python").exists() and stamp.exists() and stamp.read_text().strip() == want:
            return venv
        print(f"publish: building {venv}", file=sys.stderr)
        subprocess.run([os.environ.get("PYTHON", sys.executable), "-m", "venv", "--clear", str(venv)], check=True)
        pip = subprocess.run([str(venv / "bin" / "pip"), "install", "--quiet", "--disable-pip-version-check",
                              "-r", str(REQUIREMENTS)], capture_output=True, text=True, check=False)
        if pip.returncode != 0:
            raise RuntimeError(f"pip install -r {REQUIREMENTS} failed:\n{pip.stdout}\n{pip.stderr}")
        stamp.write_text(want + "\n")
    return venv


def pandoc(venv: Path) -> Path:
    """The pandoc binary that the pypandoc-binary wheel ships."""
    found = subprocess.run([str(venv / "bin" / "python"), "-c", "import pypandoc; print(pypandoc.get_pandoc_path())"],
                           capture_output=True, text=True, check=True).stdout.strip()
    return Path(found)


def guides() -> list[Path]:
    """Every guide in docs/, each of which has a docsite page."""
    return sorted(DOCS.glob("*.md"))


def page_path(guide: Path) -> Path:
    return DOCSITE_RST / f"{guide.stem}.rst"


def label(guide: Path) -> str:
    return LABEL_PREFIX + guide.stem.replace("-", "_")


def render_page(guide: Path, pandoc_bin: Path) -> str:
    """The docsite page of one guide: its label, then pandoc's reStructuredText of it."""
    body = subprocess.run([str(pandoc_bin), "--from", "gfm-gfm_auto_identifiers", "--to", "rst", "--wrap", "preserve", str(guide)],
                          capture_output=True, text=True, check=True).stdout
    relative = guide.relative_to(REPO_ROOT)
    return (f"..\n  Made from {relative} by `make docsite`; edit that file, not this one.\n\n"
            f".. _{label(guide)}:\n\n{body}")


def write_pages() -> list[Path]:
    """(Re)write docs/docsite/rst/ from docs/*.md; pages of removed guides go too."""
    pandoc_bin = pandoc(publish_venv())
    DOCSITE_RST.mkdir(parents=True, exist_ok=True)
    wanted = {page_path(g): render_page(g, pandoc_bin) for g in guides()}
    for stale in set(DOCSITE_RST.glob("*.rst")) - set(wanted):
        stale.unlink()
    for path, text in wanted.items():
        path.write_text(text)
    return sorted(wanted)


if __name__ == "__main__":
    for written in write_pages():
        print(written.relative_to(REPO_ROOT))
