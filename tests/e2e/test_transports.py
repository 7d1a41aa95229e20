"""The same role and actions over every transport users run: Basic, NTLM, HTTPS.

Each simulated host listens with one authentication scheme and one URL
scheme, exactly as its inventory entry says, and accepts nothing else: an NTLM
host answers Basic with 401, an HTTPS host does not speak plain HTTP, and, as
on Windows, Basic over plain HTTP only works on a host that allows unencrypted
messages (``allow_unencrypted``, WinRM's AllowUnencrypted). So a
host that converges has been reached over its own transport. The request log
records whether each body arrived NTLM-encrypted, which is how message
encryption is shown rather than assumed. The certificate is made at test time
by the simulator; the client must trust its CA, given in the inventory.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import certifi

from tests.e2e.conftest import REPO_ROOT, PlaybookRun, SimulatedFleet, operations

REMEDIATE = REPO_ROOT / "playbooks" / "remediate.yml"
COMPLIANCE = REPO_ROOT / "playbooks" / "compliance.yml"
REPORT_CALLBACKS = "record_results,mailops.iis_smtp.fleet_report"

DRIFTED = {"service": {"state": "running", "start_mode": "manual"},
           "instances": [{"id": 1, "state": "stopped"}, {"id": 2, "comment": "App relay", "state": "paused"}]}
TRANSPORTS: dict[str, dict[str, Any]] = {
    "basic_http": {"auth": "basic", "scheme": "http", "allow_unencrypted": True},
    "ntlm_http": {"auth": "ntlm", "scheme": "http"},
    "basic_https": {"auth": "basic", "scheme": "https"},
    "ntlm_https": {"auth": "ntlm", "scheme": "https"},
}
FLEET: dict[str, Any] = {
    "defaults": {"os": "Windows Server 2022", "transition_s": 0.05, **DRIFTED},
    "hosts": TRANSPORTS,
}


def run_with_report(fleet: SimulatedFleet, playbook: Path, name: str) -> tuple[PlaybookRun, dict[str, Any]]:
    out = fleet.workdir / f"report-{name}"
    # The role leaves the start mode alone unless asked; here it is asked, so it travels too.
    run = fleet.play(playbook, extra_vars={"iis_smtp_serial": "100%", "iis_smtp_service_start_mode": "auto"},
                     env={"ANSIBLE_CALLBACKS_ENABLED": REPORT_CALLBACKS, "IIS_SMTP_REPORT_DIR": str(out)})
    assert (out / "report.json").exists(), run.stdout + run.stderr
    return run, json.loads((out / "report.json").read_text())


def statuses(report: dict[str, Any]) -> dict[str, str]:
    return {h["host"]: h["status"] for h in report["hosts"]}


def request_log(fleet: SimulatedFleet) -> list[dict[str, Any]]:
    return [json.loads(line) for line in fleet.request_log.read_text().splitlines()]


def test_role_and_both_actions_over_every_transport(sim: Any) -> None:
    fleet = sim(FLEET)
    inventory = fleet.hosts()
    for host, transport in TRANSPORTS.items():
        assert inventory[host]["ansible_winrm_transport"] == transport["auth"]
        assert inventory[host]["ansible_winrm_scheme"] == transport["scheme"]
        assert inventory[host]["ansible_winrm_server_cert_validation"] == "validate"
        if transport["scheme"] == "https":
            assert Path(inventory[host]["ansible_winrm_ca_trust_path"]).is_file()

    fixed, report = run_with_report(fleet, REMEDIATE, "remediate")
    assert fixed.rc == 0, fixed.stdout + fixed.stderr
    assert statuses(report) == {host: "remediated" for host in TRANSPORTS}
    audit, report = run_with_report(fleet, COMPLIANCE, "audit")
    assert audit.rc == 0, audit.stdout + audit.stderr
    assert statuses(report) == {host: "compliant" for host in TRANSPORTS}
    # The role is one virtual_server task; the read is a playbook of its own.
    read = fleet.play("- hosts: all\n  gather_facts: false\n"
                      "  tasks: [{name: read, mailops.iis_smtp.virtual_server_info: {}}]\n")
    assert read.rc == 0, read.stdout + read.stderr
    state = fleet.stop()

    for host in TRANSPORTS:
        ran = {(r["action"], r["status"]) for r in fixed.for_host(host) + audit.for_host(host) + read.for_host(host)}
        assert ("mailops.iis_smtp.virtual_server", "changed") in ran, host
        assert ("mailops.iis_smtp.virtual_server", "ok") in ran, host
        assert ("mailops.iis_smtp.virtual_server_info", "ok") in ran, host
        assert [i["state"] for i in state["hosts"][host]["instances"]] == ["started", "started"]
        assert state["hosts"][host]["service"]["start_mode"] == "Auto"
        assert {(op["command"], op["ok"]) for op in operations(state, host)} == {
            ("auto", True), ("start", True), ("continue", True)}

    # NTLM over HTTP seals every SOAP body; over HTTPS TLS already protects it
    # (pywinrm's message_encryption "auto"), and Basic never has a session to seal with.
    by_host: dict[str, list[bool]] = {}
    for entry in request_log(fleet):
        if entry.get("action"):
            by_host.setdefault(entry["host"], []).append(entry["encrypted"])
    for host, transport in TRANSPORTS.items():
        assert by_host[host], host
        assert set(by_host[host]) == {transport == {"auth": "ntlm", "scheme": "http"}}, host


UNTRUSTED = """
- hosts: all
  gather_facts: false
  tasks:
    - name: CA that did not sign the host certificate
      mailops.iis_smtp.virtual_server_info:
      vars:
        ansible_winrm_ca_trust_path: "{{ public_cas }}"
      # Unreachable, as Ansible reports it itself: ignore_unreachable keeps the host in the play.
      ignore_unreachable: true
    - name: no CA at all
      mailops.iis_smtp.virtual_server_info:
      vars:
        ansible_winrm_ca_trust_path: null
      ignore_unreachable: true
    - name: validation explicitly off
      mailops.iis_smtp.virtual_server_info:
      vars:
        ansible_winrm_ca_trust_path: "{{ public_cas }}"
        ansible_winrm_server_cert_validation: ignore
    - name: the CA from the inventory
      mailops.iis_smtp.virtual_server:
"""


def test_an_untrusted_certificate_is_refused_unless_validation_is_off(sim: Any) -> None:
    fleet = sim({"hosts": {"tls01": {"scheme": "https", "instances": [{"id": 1, "state": "stopped"}]}}})
    run = fleet.play(UNTRUSTED, extra_vars={"public_cas": certifi.where()})
    state = fleet.stop()

    for task in ("CA that did not sign the host certificate", "no CA at all"):
        refused = run.result("tls01", task)
        assert refused["status"] == "unreachable", refused
        assert refused["result"]["reason"] == "connection_failed"
        assert "(TLS certificate not trusted)" in refused["result"]["msg"]
        assert "CERTIFICATE_VERIFY_FAILED" in refused["result"]["msg"]
    assert run.status("tls01", "validation explicitly off") == "ok"
    assert run.status("tls01", "the CA from the inventory") == "changed"
    # Only the two calls that trusted the host reached it: one observe each, plus the one apply.
    assert state["hosts"]["tls01"]["observes"] == 2 and state["hosts"]["tls01"]["applies"] == 1
    assert [i["state"] for i in state["hosts"]["tls01"]["instances"]] == ["started"]
