"""The checks Galaxy, Automation Hub and the Ansible docsite run on every collection.

- galaxy-importer imports the tarball with no error and no warning
  (tests/ecosystem/galaxy-importer.cfg: everything but ansible-test sanity,
  which needs a container; tests/run_sanity.sh runs that).
- ``antsibull-docs lint-collection-docs`` finds nothing, and the docsite
  builds: ``antsibull-docs sphinx-init`` + its build.sh (``antsibull-docs
  collection``, then Sphinx with warnings as errors) write a page for every
  plugin, the role and every guide in docs/.
- The docsite pages of the guides are current (``make docsite``).

All of it runs on the installed tarball, what users and Galaxy get.
"""

from __future__ import annotations

import json
import re
import zlib
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.ecosystem.conftest import REPO_ROOT, publish_env, run
from tests.ecosystem.publish import COLLECTION, DOCSITE_RST, guides, label, page_path, pandoc, publish_venv, render_page

IMPORTER_CONFIG = Path(__file__).resolve().parent / "galaxy-importer.cfg"
# The pages of the Ansible docsite that collection pages link to, with the
# addresses they have there. A standalone build cannot fetch the docsite's
# inventory, so it gets these; a link to any other label still fails it.
ANSIBLE_DOCSITE_LABELS = {
    "action_plugins": ("plugins/action.html#action-plugins", "Action plugins"),
    "callback_plugins": ("plugins/callback.html#callback-plugins", "Callback plugins"),
    "common_return_values": ("reference_appendices/common_return_values.html#common-return-values",
                             "Return Values"),
    "ansible_configuration_settings": ("reference_appendices/config.html#ansible-configuration-settings",
                                       "Ansible Configuration Settings"),
}


@pytest.fixture(scope="module")
def importer(galaxy_tarball: Path, publish_bin: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """galaxy-importer's log and result for the tarball."""
    work = tmp_path_factory.mktemp("importer")
    env = publish_env(publish_bin, HOME=str(work), GALAXY_IMPORTER_CONFIG=str(IMPORTER_CONFIG),
                      GALAXY_IMPORTER_TMP_ROOT_DIR=str(work), GALAXY_IMPORTER_ANSIBLE_LOCAL_TMP=str(work / "ansible-tmp"))
    proc = run([str(publish_bin / "python"), "-m", "galaxy_importer.main", str(galaxy_tarball)], cwd=work, env=env,
               timeout=600)
    return {"log": proc.stdout + proc.stderr, "result": json.loads((work / "importer_result.json").read_text())}


def test_galaxy_importer_accepts_the_tarball_without_error_or_warning(importer: dict[str, Any]) -> None:
    log = importer["log"]
    problems = [line for line in log.splitlines() if re.match(r"(ERROR|WARNING|CRITICAL)\b", line)]
    assert problems == [], log
    assert "Importer processing completed successfully" in log, log
    # ansible-lint and flake8 ran: their absence would also leave no warning.
    assert "Linting collection via ansible-lint" in log and "via flake8" in log, log


def test_galaxy_importer_finds_every_piece_of_content(importer: dict[str, Any]) -> None:
    result = importer["result"]
    found = {(c["content_type"], c["name"]) for c in result["contents"]}
    shipped = {("module", p.stem) for p in (REPO_ROOT / "plugins" / "modules").glob("*.py")}
    shipped |= {("callback", p.stem) for p in (REPO_ROOT / "plugins" / "callback").glob("*.py")}
    shipped |= {("playbook", p.name) for p in (REPO_ROOT / "playbooks").glob("*.yml")}
    shipped |= {("role", p.name) for p in (REPO_ROOT / "roles").iterdir()}
    assert shipped <= found, sorted(shipped - found)
    docs = {(c["content_type"], c["content_name"]): c for c in result["docs_blob"]["contents"]}
    for kind, name in shipped:
        if kind in ("module", "callback"):
            assert docs[(kind, name)]["doc_strings"], (kind, name)
        if kind == "role":
            assert docs[(kind, name)]["readme_html"], (kind, name)
    assert result["docs_blob"]["collection_readme"]["html"]


def test_antsibull_docs_lint_collection_docs_is_clean(
        installed_collections: Path, publish_bin: Path, tmp_path: Path) -> None:
    collection = installed_collections / "ansible_collections" / "mailops" / "iis_smtp"
    env = publish_env(publish_bin, HOME=str(tmp_path), ANSIBLE_COLLECTIONS_PATH=str(installed_collections))
    proc = run([str(publish_bin / "antsibull-docs"), "lint-collection-docs", "--plugin-docs", "."],
               cwd=collection, env=env)
    assert proc.stdout.strip() == "" and proc.stderr.strip() == "", proc.stdout + proc.stderr


def ansible_docsite_inventory() -> bytes:
    """A Sphinx objects.inv (version 2) holding ANSIBLE_DOCSITE_LABELS."""
    lines = "".join(f"{name} std:label -1 {uri} {title}\n" for name, (uri, title) in ANSIBLE_DOCSITE_LABELS.items())
    header = b"# Sphinx inventory version 2\n# Project: Ansible\n# Version: devel\n" \
             b"# The remainder of this file is compressed using zlib.\n"
    return header + zlib.compress(lines.encode())


@pytest.fixture(scope="module")
def docsite(installed_collections: Path, publish_bin: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The built docsite (HTML) of the installed collection."""
    site = tmp_path_factory.mktemp("docsite")
    env = publish_env(publish_bin, HOME=str(site), ANSIBLE_COLLECTIONS_PATH=str(installed_collections))
    # antsibull-docs writes only into a directory nobody else may write to.
    (site / "build-dir").mkdir(mode=0o755)
    run([str(publish_bin / "antsibull-docs"), "sphinx-init", "--use-current", "--squash-hierarchy",
         "--dest-dir", str(site / "build-dir"), COLLECTION], cwd=site, env=env)
    conf = site / "build-dir" / "conf.py"
    # The Ansible docsite's inventory only, from a file: nothing is fetched.
    inventory = site / "ansible_devel.inv"
    inventory.write_bytes(ansible_docsite_inventory())
    text, count = re.subn(r"intersphinx_mapping = \{.*?\n\}\n",
                          "intersphinx_mapping = {'ansible_devel': ('https://docs.ansible.com/projects/ansible/devel/', "
                          f"{str(inventory)!r})}}\n", conf.read_text(), flags=re.DOTALL)
    assert count == 1, "conf.py has no intersphinx_mapping to replace"
    conf.write_text(text)
    proc = run(["bash", str(site / "build-dir" / "build.sh")], cwd=site / "build-dir", env=env, timeout=600)
    log = proc.stdout + proc.stderr
    assert "WARNING" not in log and "ERROR" not in log, log
    return site / "build-dir"


def test_the_docsite_builds_a_page_for_every_plugin_the_role_and_every_guide(docsite: Path) -> None:
    html = docsite / "build" / "html"
    expected = [f"{p.stem}_module.html" for p in (REPO_ROOT / "plugins" / "modules").glob("*.py")]
    expected += [f"{p.stem}_callback.html" for p in (REPO_ROOT / "plugins" / "callback").glob("*.py")]
    expected += [f"{p.name}_role.html" for p in (REPO_ROOT / "roles").iterdir()]
    expected += [f"docsite/{g.stem}.html" for g in guides()]
    assert "virtual_servers_role.html" in expected and "docsite/awx.html" in expected
    missing = [page for page in expected if not (html / page).is_file()]
    assert missing == []
    role = (html / "virtual_servers_role.html").read_text()
    assert "malformed" not in role.lower() and "iis_smtp_service_start_mode" in role
    index = (html / "index.html").read_text()
    assert all(f"docsite/{g.stem}.html" in index for g in guides())


def test_docsite_pages_are_made_from_the_current_guides() -> None:
    pandoc_bin = pandoc(publish_venv())
    pages = sorted(p.name for p in DOCSITE_RST.glob("*.rst"))
    assert pages == sorted(page_path(g).name for g in guides()), "run `make docsite`"
    stale = [g.name for g in guides() if page_path(g).read_text() != render_page(g, pandoc_bin)]
    assert stale == [], "docs/docsite/rst/ is stale for these guides: run `make docsite`"


def test_extra_docs_lists_every_guide_once() -> None:
    extra = yaml.safe_load((REPO_ROOT / "docs" / "docsite" / "extra-docs.yml").read_text())
    refs = [entry["ref"] for section in extra["sections"] for entry in section["toctree"]]
    assert sorted(refs) == sorted(g.stem for g in guides())
    for guide in guides():
        assert f".. _{label(guide)}:" in page_path(guide).read_text()
