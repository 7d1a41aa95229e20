# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What both action plugins check before the engine sends anything.

Internal to mailops.iis_smtp. The actions are glue; the checks they share
sit here once: a task delegated to another host (its result would describe
that host under this one), credentials the connection cannot encode, a
connection that cannot carry the agent, and, inside this collection's role,
a misspelt role variable. Each returns the failed result to give, or None.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ansible.errors import AnsibleError

from . import _args, _engine, _transport
from ._protocol import CREDENTIALS_UNENCODABLE, DELEGATION_UNSUPPORTED, AgentError


def _option(connection: Any, name: str) -> Any:
    try:
        return connection.get_option(name)
    except (KeyError, AttributeError):
        return None


def _auth(connection: Any) -> tuple[str, list[str]]:
    """The connection plugin's short name and the authentication methods it will try."""
    kind = str(getattr(connection, "transport", "") or "").rsplit(".", 1)[-1]
    if kind == "psrp":
        return kind, [str(_option(connection, "auth") or "negotiate")]
    if kind != "winrm":
        return kind, []
    transport = _option(connection, "transport")
    if transport and transport[0] is not None:
        return kind, [str(t) for t in transport]
    # The winrm plugin's own default: Kerberos for a UPN, otherwise Basic
    # (`ssl` over HTTPS, `plaintext` over HTTP).
    user = str(_option(connection, "remote_user") or "")
    return kind, ["kerberos" if "@" in user else "plaintext"]


def preflight(task: Any, connection: Any, become: bool, task_vars: Mapping[str, Any]) -> dict[str, Any] | None:
    """The failed result of a task that must not reach the host, or None when it may."""
    host = task_vars.get("inventory_hostname")
    delegated = getattr(task, "delegate_to", None)
    if delegated and delegated != host:
        return _engine.failure(DELEGATION_UNSUPPORTED, (
            "delegate_to is not supported by mailops.iis_smtp: the task would act on %s and report it as %s; "
            "target the Windows host itself (hosts:) instead" % (delegated, host)))
    kind, methods = _auth(connection)
    problem = _args.unencodable_credentials(kind, methods, _option(connection, "remote_user"),
                                            _option(connection, "remote_password"))
    if problem is not None:
        return _engine.failure(CREDENTIALS_UNENCODABLE, problem)
    try:
        _transport.check_connection(connection, become=become)
    except AgentError as exc:
        return _engine.failure(exc.code, exc.message)
    return None


def in_role(task: Any) -> bool:
    """Whether the task is one of this collection's role."""
    role = getattr(task, "_role", None)
    return role is not None and role.get_name() == _args.ROLE


def role_arguments(task: Any, task_vars: Mapping[str, Any], templar: Any) -> dict[str, Any]:
    """The task's own arguments; for the role's task, which has none, the role's variables.

    The role hands its variables over this way rather than as templated task
    arguments: Ansible compiles each template of a task in every worker, once
    per host, which cost 20 ms of controller CPU per host (docs/fleet.md).
    """
    args = dict(task.args)
    if args or not in_role(task):
        return args
    try:
        return _args.role_arguments(task_vars, templar.template)
    except AnsibleError as exc:
        raise _args.ArgumentError("Invalid role variables: %s" % exc, "invalid_argument") from exc


def role_variables(task: Any, task_vars: Mapping[str, Any]) -> dict[str, Any] | None:
    """Inside this collection's role, the failed result for `iis_smtp_*` variables the role does not have.

    Role argument validation checks only the variables a role declares, and
    Ansible hands every variable to every task, so a misspelt name would be
    ignored without a word; the task sees them all and can say so.
    """
    if not in_role(task):
        return None
    errors = _args.role_variable_errors(task_vars, task._role.get_default_vars())
    if not errors:
        return None
    return _engine.failure("invalid_argument", "Invalid role variables: " + "; ".join(errors))
