"""The Ansible inventory that points at a running simulator.

Tests, molecule and the demo run the real ``ansible-playbook`` against the
simulated fleet; they need nothing but this file to reach every host with the
right port, transport, scheme, credentials and CA.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from .server import Endpoint

READ_TIMEOUT_S = 30
OPERATION_TIMEOUT_S = 20


def host_vars(endpoint: Endpoint, ca_path: Path | None) -> dict[str, Any]:
    """Connection variables of one host."""
    variables: dict[str, Any] = {
        "ansible_host": "127.0.0.1",
        "ansible_port": endpoint.port,
        "ansible_connection": "winrm",
        "ansible_shell_type": "powershell",
        "ansible_winrm_transport": endpoint.auth,
        "ansible_winrm_scheme": endpoint.scheme,
        "ansible_user": endpoint.username,
        "ansible_password": endpoint.password,
        "ansible_winrm_server_cert_validation": "validate",
        "ansible_winrm_read_timeout_sec": READ_TIMEOUT_S,
        "ansible_winrm_operation_timeout_sec": OPERATION_TIMEOUT_S,
    }
    if endpoint.scheme == "https" and ca_path is not None:
        variables["ansible_winrm_ca_trust_path"] = str(ca_path)
    return variables


def build(group: str, endpoints: Mapping[str, Endpoint], ca_path: Path | None) -> dict[str, Any]:
    """The inventory document: every host in ``group``, in scenario order."""
    hosts = {name: host_vars(endpoint, ca_path) for name, endpoint in endpoints.items()}
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
