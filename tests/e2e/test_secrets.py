"""The connection password never shows up anywhere a run leaves text behind.

Both playbooks run at -vvvv (where Ansible prints the most about its
connections) over every transport, including hosts that fail in ways that
produce long error messages, and the password is searched for in every form
it travels in: as typed, in a Basic Authorization header, URL-encoded and as
UTF-16 (the encoding of PowerShell's -EncodedCommand).
"""

from __future__ import annotations

import base64
import urllib.parse
from pathlib import Path
from typing import Any

from tests.e2e.conftest import REPO_ROOT, SimulatedFleet

REMEDIATE = REPO_ROOT / "playbooks" / "remediate.yml"
COMPLIANCE = REPO_ROOT / "playbooks" / "compliance.yml"
REPORT_CALLBACKS = "record_results,mailops.iis_smtp.fleet_report"
USER = "Administrator"
PASSWORDS = {
    "basic_http": "Zebra-Quartz-7741!",
    "ntlm_http": "Otter/Lantern=5520?",
    "basic_https": "Heron Maple 3318 &",
    "rejected": "Falcon-Cobalt-9083#",
    "garbage": "Badger-Saffron-2264$",
}
FLEET: dict[str, Any] = {
    "defaults": {"transition_s": 0.05, "username": USER,
                 "instances": [{"id": 1, "state": "stopped"}, {"id": 2, "comment": "Relay", "state": "paused"}]},
    "hosts": {
        "basic_http": {"auth": "basic", "allow_unencrypted": True, "password": PASSWORDS["basic_http"]},
        "ntlm_http": {"auth": "ntlm", "password": PASSWORDS["ntlm_http"]},
        "basic_https": {"auth": "basic", "scheme": "https", "password": PASSWORDS["basic_https"]},
        "rejected": {"password": PASSWORDS["rejected"], "faults": {"http_401": True}},
        "garbage": {"auth": "ntlm", "password": PASSWORDS["garbage"],
                    "faults": {"agent_output": {"kind": "garbage", "on": "apply"}}},
    },
}


def forms(password: str) -> list[str]:
    """Every way the password could appear in text."""
    basic = base64.b64encode(f"{USER}:{password}".encode()).decode()
    utf16 = base64.b64encode(password.encode("utf-16-le")).decode()
    return [password, basic, urllib.parse.quote(password), urllib.parse.quote_plus(password), utf16,
            repr(password)[1:-1]]


def run_verbose(fleet: SimulatedFleet, playbook: Path, name: str) -> tuple[str, Path]:
    out = fleet.workdir / f"report-{name}"
    run = fleet.play(playbook, args=["-vvvv"], extra_vars={"iis_smtp_serial": "100%",
                                                           "iis_smtp_max_fail_percentage": 100},
                     env={"ANSIBLE_CALLBACKS_ENABLED": REPORT_CALLBACKS, "IIS_SMTP_REPORT_DIR": str(out)})
    assert (out / "report.json").exists(), run.stdout[-3000:] + run.stderr[-3000:]
    # The run did talk to the hosts at length: the search below has something to search.
    assert "ESTABLISH WINRM CONNECTION" in run.stdout and "IIS SMTP FLEET REPORT" in run.stdout
    return run.stdout + "\n" + run.stderr, out


def test_no_password_in_output_reports_or_request_log(sim: Any) -> None:
    fleet = sim(FLEET)
    assert {h: fleet.password(h) for h in PASSWORDS} == PASSWORDS
    remediate_text, remediate_out = run_verbose(fleet, REMEDIATE, "remediate")
    audit_text, audit_out = run_verbose(fleet, COMPLIANCE, "audit")
    fleet.stop()

    texts = {"remediate stdout+stderr": remediate_text, "audit stdout+stderr": audit_text}
    for out in (remediate_out, audit_out):
        for report in ("report.json", "report.junit.xml", "report.html"):
            texts[str(out / report)] = (out / report).read_text(encoding="utf-8")
    texts["request log"] = fleet.request_log.read_text(encoding="utf-8")
    texts["state dump"] = fleet.state_dump.read_text(encoding="utf-8")
    texts["simulator log"] = (fleet.workdir / "simulator.log").read_text(encoding="utf-8", errors="replace")
    assert texts["request log"].count("\n") > 50

    for host, password in PASSWORDS.items():
        for form in forms(password):
            for where, text in texts.items():
                assert form not in text, f"the password of {host} appears in {where} (as {form!r})"
    # The failing hosts were reported, so their error paths were exercised too.
    assert "auth_failed" in texts[str(remediate_out / "report.json")]
    assert "agent_output_invalid" in texts[str(remediate_out / "report.json")]
