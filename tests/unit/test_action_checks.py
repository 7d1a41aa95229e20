"""What both actions refuse before the engine sends anything: delegation, unencodable credentials, role typos."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest
from ansible.errors import AnsibleError

from ansible_collections.mailops.iis_smtp.plugins.plugin_utils import _action, _args


@dataclass
class Shell:
    SHELL_FAMILY: str = "powershell"


@dataclass
class Connection:
    """A connection plugin as the actions see one: a transport name, options, a shell."""

    transport: str = "ansible.builtin.winrm"
    options: dict[str, Any] = field(default_factory=dict)
    _shell: Shell = field(default_factory=Shell)

    def get_option(self, name: str) -> Any:
        if name not in self.options:
            raise KeyError(name)
        return self.options[name]


@dataclass
class Role:
    name: str
    defaults: dict[str, Any]

    def get_name(self) -> str:
        return self.name

    def get_default_vars(self) -> dict[str, Any]:
        return self.defaults


@dataclass
class Task:
    delegate_to: str | None = None
    _role: Role | None = None
    args: dict[str, Any] = field(default_factory=dict)


HOST = {"inventory_hostname": "relay01"}
LATIN = {"remote_user": "Administrator", "remote_password": "Pässwörd"}
EURO = {"remote_user": "Administrator", "remote_password": "Pässwörd€"}


def test_a_plain_task_passes():
    assert _action.preflight(Task(), Connection(options=LATIN), False, HOST) is None


@pytest.mark.parametrize("delegate_to,refused", [("relay02", True), ("relay01", False), (None, False)])
def test_delegation_to_another_host_is_refused(delegate_to, refused):
    result = _action.preflight(Task(delegate_to=delegate_to), Connection(options=LATIN), False, HOST)
    if not refused:
        assert result is None
        return
    assert result is not None and result["failed"] and result["reason"] == "delegation_unsupported"
    assert "act on relay02 and report it as relay01" in result["msg"]


@pytest.mark.parametrize("connection,refused", [
    (Connection(options={**EURO, "transport": ["basic"]}), True),
    # The winrm plugin's own default without a transport is Basic (plaintext or ssl).
    (Connection(options=EURO), True),
    (Connection(options={**EURO, "transport": [None]}), True),
    (Connection(options={**EURO, "remote_user": "admin@CORP.EXAMPLE"}), False),
    (Connection(options={**EURO, "transport": ["ntlm"]}), False),
    (Connection(transport="psrp", options={**EURO, "auth": "basic"}), True),
    (Connection(transport="psrp", options=EURO), False),
    (Connection(transport="ssh", options=EURO), False),
])
def test_credentials_basic_authentication_cannot_carry_are_a_credential_problem(connection, refused):
    result = _action.preflight(Task(), connection, False, HOST)
    if not refused:
        assert result is None or result["reason"] != "credentials_unencodable"
        return
    assert result is not None and result["reason"] == "credentials_unencodable" and result["unreachable"]
    assert "€" not in result["msg"]


def test_a_connection_that_cannot_carry_the_agent_is_refused():
    result = _action.preflight(Task(), Connection(transport="local", options=LATIN), False, HOST)
    assert result is not None and result["reason"] == "not_windows"
    become = _action.preflight(Task(), Connection(options=LATIN), True, HOST)
    assert become is not None and become["reason"] == "become_unsupported"


ROLE = Role("mailops.iis_smtp.virtual_servers", {"iis_smtp_state": "started", "iis_smtp_instance_states": {}})


def test_role_variables_are_checked_only_inside_the_collections_role():
    typo = {"iis_smtp_instance_state": {}, **HOST}
    assert _action.role_variables(Task(), typo) is None
    assert _action.role_variables(Task(_role=Role("site.relays", {})), typo) is None
    result = _action.role_variables(Task(_role=ROLE), typo)
    assert result is not None and result["reason"] == "invalid_argument"
    assert result["msg"].startswith("Invalid role variables: iis_smtp_instance_state is not a variable")
    assert _action.role_variables(Task(_role=ROLE), {"iis_smtp_state": "stopped", **HOST}) is None


class Templar:
    """Templates only "{{ ok }}", and fails on anything else that looks like a template, as Ansible would."""

    def template(self, value: Any) -> Any:
        if value == "{{ ok }}":
            return "stopped"
        if isinstance(value, str) and "{{" in value:
            raise AnsibleError("'nowhere' is undefined")
        return value


def test_only_the_roles_task_takes_its_arguments_from_the_role_variables():
    variables = {"iis_smtp_state": "{{ ok }}", "iis_smtp_instances": [], **HOST}
    assert _action.role_arguments(Task(args={"state": "paused"}), variables, Templar()) == {"state": "paused"}
    assert _action.role_arguments(Task(), variables, Templar()) == {}
    assert _action.role_arguments(Task(_role=Role("site.relays", {})), variables, Templar()) == {}
    assert _action.role_arguments(Task(_role=ROLE), variables, Templar()) == {"state": "stopped"}
    with pytest.raises(_args.ArgumentError, match="Invalid role variables: 'nowhere' is undefined") as caught:
        _action.role_arguments(Task(_role=ROLE), {"iis_smtp_timeout": "{{ nowhere }}"}, Templar())
    assert caught.value.reason == "invalid_argument"
