"""Builders for agent observations and responses in the shape of docs/agent-protocol.md.

Tests describe a host in a line (`observation(instances=[inst(2, state=6)])`)
and get the exact JSON the agent would send, so the engine is exercised
through its real parsing path.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from ansible_collections.mailops.iis_smtp.plugins.plugin_utils._model import Host, Instance

FIXTURES = Path(__file__).parent / "fixtures"


def inst(ident: int, state: int | None = 2, comment: str = "", auto_start: bool | None = None,
         bindings: list[str] | None = None, error: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"id": ident, "server_comment": comment, "server_state": state,
            "bindings": bindings if bindings is not None else [":%d:" % (24 + ident)],
            "auto_start": (state in (1, 2)) if auto_start is None else auto_start, "error": error}


def service(state: str | None = "Running", start_mode: str | None = "Auto", delayed: bool = False,
            installed: bool = True) -> dict[str, Any]:
    if not installed:
        return {"installed": False, "state": None, "start_mode": None, "delayed_auto_start": None, "error": None}
    return {"installed": True, "state": state, "start_mode": start_mode, "delayed_auto_start": delayed,
            "error": None}


def win_error(message: str, hresult: str | None, type_name: str = "COMException") -> dict[str, Any]:
    return {"message": message, "hresult": hresult, "type": type_name}


def unread(iisadmin_state: str = "Stopped", start_mode: str = "Manual", smtp: dict[str, Any] | None = None) -> dict[str, Any]:
    """An observation of a host whose IISADMIN does not run: the agent did not bind the metabase."""
    message = "IISADMIN state: %s; the metabase was not read, because binding it would start IISADMIN" % iisadmin_state
    return observation(smtp=smtp or service("Stopped", "Manual"), iisadmin=service(iisadmin_state, start_mode),
                       metabase_error=win_error(message, None, "iisadmin_not_running"))


def observation(instances: list[dict[str, Any]] | None = None, smtp: dict[str, Any] | None = None,
                build: int = 17763, metabase_error: dict[str, Any] | None = None,
                is_admin: bool = True, iisadmin: dict[str, Any] | None = None) -> dict[str, Any]:
    caption = "Microsoft Windows Server 2025 Standard" if build >= 26100 else \
        "Microsoft Windows Server 2019 Standard"
    return {
        "os": {"caption": caption, "version": "10.0.%d" % build, "build": build, "product_type": 3},
        "computer_name": "RELAY01",
        "ps_version": "5.1.17763.1",
        "is_admin": is_admin,
        "services": {"SMTPSVC": smtp or service(), "IISADMIN": iisadmin or service()},
        "metabase": {"ok": metabase_error is None, "error": metabase_error},
        "instances": [] if metabase_error is not None else
        (instances if instances is not None else [inst(1)]),
    }


def response(obs: dict[str, Any] | None, action: str = "observe",
             steps: list[dict[str, Any]] | None = None, settled: bool = True) -> dict[str, Any]:
    doc: dict[str, Any] = {"protocol": 1, "agent_version": "1.0.0", "action": action, "ok": True,
                           "error": None, "observation": copy.deepcopy(obs), "steps": [], "elapsed_ms": 5}
    if action == "apply":
        doc["steps"] = steps or []
        doc["settled"] = settled
    return doc


def step_result(op: str, ident: int | None = None, command: str | None = None,
                error: dict[str, Any] | None = None) -> dict[str, Any]:
    ok = error is None
    if op == "instance":
        attempts = [{"via": "method", "ok": ok, "error": error}]
        if not ok:
            attempts.append({"via": "server_command", "ok": False, "error": error})
    else:
        attempts = [{"via": "service", "ok": ok, "error": error}]
    return {"op": op, "id": ident, "command": command, "ok": ok, "attempts": attempts, "error": error}


def load(name: str) -> list[dict[str, Any]]:
    """A recorded sequence of agent responses."""
    responses: list[dict[str, Any]] = json.loads((FIXTURES / name).read_text(encoding="utf-8"))["responses"]
    return responses


def one(host: Host, ident: int) -> Instance:
    """The instance with this id, which the test knows exists."""
    found = host.instance(ident)
    assert found is not None, "no instance %d" % ident
    return found


class Clock:
    """A clock that moves only when the host is called, so no test depends on real time."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Replay:
    """The `call` the engine gets: answers from a recorded sequence and keeps every request.

    Each call advances `clock` by `per_call` seconds, or by the request's
    whole settle timeout when the recorded answer says it did not settle,
    as a real agent would have waited.
    """

    def __init__(self, responses: list[Any], clock: Clock | None = None, per_call: float = 1.0) -> None:
        self.responses = list(responses)
        self.requests: list[dict[str, Any]] = []
        self.clock = clock or Clock()
        self.per_call = per_call

    def __call__(self, request: dict[str, Any]) -> dict[str, Any]:
        self.requests.append(copy.deepcopy(request))
        if not self.responses:
            raise AssertionError("the engine sent more requests than were recorded: %r" % (request,))
        item = self.responses.pop(0)
        if isinstance(item, BaseException):
            raise item
        answer: dict[str, Any] = item
        if answer.get("settled") is False:
            self.clock.now += request.get("settle_timeout_s", 0)
        else:
            self.clock.now += self.per_call
        return answer

    @property
    def steps_sent(self) -> list[dict[str, Any]]:
        return [s for r in self.requests if r["action"] == "apply" for s in r["steps"]]
