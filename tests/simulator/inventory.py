"""The Ansible inventory that points at a running simulator.

Tests, molecule and the demo run the real ``ansible-playbook`` against the
simulated fleet; they need nothing but this file to reach every host with the
right connection (winrm, psrp or ssh), port, authentication, scheme,
credentials, CA, key and known hosts.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from .server import Endpoint
from .ssh import SshEndpoint, SshKeys

READ_TIMEOUT_S = 30
OPERATION_TIMEOUT_S = 20


def host_vars(endpoint: Endpoint, ca_path: Path | None) -> dict[str, Any]:
    """Connection variables of one WS-Management host (winrm or psrp), certificate validation on."""
    common: dict[str, Any] = {
        "ansible_host": "127.0.0.1",
        "ansible_port": endpoint.port,
        "ansible_connection": endpoint.connection,
        "ansible_shell_type": "powershell",
        "ansible_user": endpoint.username,
        "ansible_password": endpoint.password,
    }
    https = endpoint.scheme == "https" and ca_path is not None
    if endpoint.connection == "psrp":
        return common | {
            "ansible_psrp_auth": endpoint.auth,
            "ansible_psrp_protocol": endpoint.scheme,
            "ansible_psrp_cert_validation": "validate",
            "ansible_psrp_read_timeout": READ_TIMEOUT_S,
            "ansible_psrp_operation_timeout": OPERATION_TIMEOUT_S,
        } | ({"ansible_psrp_ca_cert": str(ca_path)} if https else {})
    return common | {
        "ansible_winrm_transport": endpoint.auth,
        "ansible_winrm_scheme": endpoint.scheme,
        "ansible_winrm_server_cert_validation": "validate",
        "ansible_winrm_read_timeout_sec": READ_TIMEOUT_S,
        "ansible_winrm_operation_timeout_sec": OPERATION_TIMEOUT_S,
    } | ({"ansible_winrm_ca_trust_path": str(ca_path)} if https else {})


def ssh_host_vars(endpoint: SshEndpoint, keys: SshKeys) -> dict[str, Any]:
    """Connection variables of one Windows OpenSSH host: the run's key, host keys checked against the run's known_hosts."""
    return {
        "ansible_host": "127.0.0.1",
        "ansible_port": endpoint.port,
        "ansible_connection": "ssh",
        "ansible_shell_type": "powershell",
        "ansible_user": endpoint.username,
        "ansible_ssh_private_key_file": str(keys.private_key),
        # Host-key checking on, whatever ANSIBLE_HOST_KEY_CHECKING says; only this run's host keys are known.
        "ansible_ssh_host_key_checking": True,
        "ansible_ssh_common_args": (
            f"-o UserKnownHostsFile={keys.known_hosts} -o GlobalKnownHostsFile=/dev/null "
            "-o StrictHostKeyChecking=yes -o IdentitiesOnly=yes"
        ),
        # ssh's control sockets must stay under the 108 bytes of a Unix socket path.
        "ansible_control_path_dir": str(keys.control_dir),
    }


def build(
    group: str,
    endpoints: Mapping[str, Endpoint | SshEndpoint],
    ca_path: Path | None,
    ssh_keys: SshKeys | None = None,
) -> dict[str, Any]:
    """The inventory document: every host in ``group``, in scenario order."""
    hosts: dict[str, Any] = {}
    for name, endpoint in endpoints.items():
        if isinstance(endpoint, SshEndpoint):
            if ssh_keys is None:
                raise ValueError(f"host {name}: an ssh host needs the run's keys")
            hosts[name] = ssh_host_vars(endpoint, ssh_keys)
        else:
            hosts[name] = host_vars(endpoint, ca_path)
    return {"all": {"children": {group: {"hosts": hosts}}}}


def write_atomic(path: Path, text: str) -> None:
    """Write beside the target and rename, so a reader never sees half a file.

    Mode 0600: the inventory and the state dump may hold passwords.
    """
    path = path.resolve()
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def dump_yaml(document: Mapping[str, Any]) -> str:
    return str(yaml.safe_dump(dict(document), sort_keys=False, default_flow_style=False))
