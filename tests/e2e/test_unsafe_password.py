"""A password with `{{` in it, marked `!unsafe` as docs/fleet.md says: the collection's outputs stay clean.

ansible-core templates every variable, passwords included; one containing
`{{` is only taken as it is when the inventory marks it `!unsafe`. With it so
marked, the run at -vvvv, the task results and the three report files hold
the password in none of the forms it travels in.
"""

from __future__ import annotations

import base64
import urllib.parse
from pathlib import Path
from typing import Any

import yaml

from tests.e2e.conftest import REPO_ROOT
from tests.e2e.reporting import report_env

PASSWORD = "Ab{{ c }}-7741!{% raw %}"
USER = "Administrator"


class Unsafe(str):
    """A string the inventory writes with Ansible's `!unsafe` tag."""


class InventoryDumper(yaml.SafeDumper):
    pass


InventoryDumper.add_representer(Unsafe, lambda dumper, text: dumper.represent_scalar("!unsafe", str(text), style="'"))


def mark_passwords(node: Any) -> Any:
    """The inventory with every ansible_password marked `!unsafe`, as docs/fleet.md tells users to."""
    if isinstance(node, dict):
        return {k: Unsafe(v) if k == "ansible_password" else mark_passwords(v) for k, v in node.items()}
    return node


def forms(password: str) -> list[str]:
    basic = base64.b64encode(f"{USER}:{password}".encode()).decode()
    return [password, basic, urllib.parse.quote(password), base64.b64encode(password.encode("utf-16-le")).decode()]


def test_a_password_marked_unsafe_never_reaches_the_collections_outputs(sim: Any) -> None:
    fleet = sim({"defaults": {"transition_s": 0.05, "username": USER},
                 "hosts": {"braces01": {"auth": "basic", "scheme": "https", "password": PASSWORD,
                                        "instances": [{"id": 1, "state": "stopped"}]}}})
    inventory = mark_passwords(yaml.safe_load(fleet.inventory.read_text()))
    marked: Path = fleet.workdir / "inventory-unsafe.yml"
    marked.write_text(yaml.dump(inventory, Dumper=InventoryDumper, sort_keys=False))
    assert "!unsafe" in marked.read_text()
    out = fleet.workdir / "report"
    run = fleet.play(REPO_ROOT / "playbooks" / "remediate.yml", args=["-vvvv", "-i", str(marked)],
                     extra_vars={"iis_smtp_target": "all"}, env=report_env(out))
    fleet.stop()
    assert run.rc == 0, run.stdout[-3000:]
    assert run.result("braces01", "mailops.iis_smtp.virtual_servers : Bring the SMTP virtual servers to their "
                                  "desired state")["status"] == "changed"
    texts = {"stdout+stderr": run.stdout + run.stderr, "task results": yaml.safe_dump(run.results)}
    texts.update({name: (out / name).read_text() for name in ("report.json", "report.junit.xml", "report.html")})
    for where, text in texts.items():
        for form in forms(PASSWORD):
            assert form not in text, f"the password appears in {where} (as {form!r})"
