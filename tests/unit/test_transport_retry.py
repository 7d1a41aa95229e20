"""Which calls the engine repeats after a lost connection, and with what time left."""

from __future__ import annotations

from ansible_collections.mailops.iis_smtp.plugins.plugin_utils._engine import EnforceArgs, enforce
from ansible_collections.mailops.iis_smtp.plugins.plugin_utils._protocol import AgentError

from .hosts import inst, observation, response, service


class Host:
    """A host that needs one start, then a wait; each call costs `cost` seconds of a shared clock."""

    def __init__(self, outcomes, cost=1.0):
        self.outcomes = list(outcomes)
        self.requests = []
        self.resets = 0
        self.now = 0.0
        self.cost = cost

    def __call__(self, request):
        self.requests.append(request)
        self.now += self.cost
        item = self.outcomes.pop(0)
        if isinstance(item, BaseException):
            raise item
        return item

    def reset(self):
        self.resets += 1

    def clock(self):
        return self.now


STOPPED = observation([inst(1, state=4)])
STARTING = observation([inst(1, state=1)])
STARTED = observation([inst(1, state=2)])
LOST = AgentError("connection_failed", "could not talk to the host (connection reset)")


def applied(obs):
    return response(obs, action="apply", steps=[{"op": "instance", "id": 1, "command": "start", "ok": True,
                                                 "attempts": [], "error": None}], settled=False)


def waited(obs):
    return response(obs, action="apply", settled=True)


def run(host, timeout=60):
    return enforce(host, host.clock, EnforceArgs(timeout=timeout), reset=host.reset)


def test_a_lost_wait_is_retried_once_after_a_reset_with_the_time_left():
    host = Host([response(STOPPED), applied(STARTING), LOST, waited(STARTED)], cost=7.0)
    result = run(host, timeout=30)
    assert result.get("failed") is not True and result["changed"] is True
    assert host.resets == 1
    assert [r["settle_timeout_s"] for r in host.requests[1:]] == [23, 16, 9]


def test_a_retried_wait_past_its_budget_only_looks():
    host = Host([response(STOPPED), applied(STARTING), LOST, waited(STARTED)], cost=12.0)
    run(host, timeout=30)
    assert host.requests[-1]["settle_timeout_s"] == 0


def test_a_second_loss_fails_the_host_as_unreachable():
    host = Host([response(STOPPED), applied(STARTING), LOST, LOST])
    result = run(host)
    assert "failed" not in result and result["unreachable"] is True
    assert result["reason"] == "connection_failed" and host.resets == 1 and len(host.requests) == 4


def test_the_first_observe_is_never_retried():
    host = Host([LOST, response(STARTED)])
    result = run(host)
    assert result["unreachable"] is True and len(host.requests) == 1 and host.resets == 0


def test_steps_are_never_sent_twice():
    host = Host([response(STOPPED), LOST, applied(STARTED)])
    result = run(host)
    assert result["reason"] == "connection_failed" and len(host.requests) == 2 and host.resets == 0


def test_permanent_failures_of_a_wait_are_not_retried():
    for failure in (AgentError("auth_failed", "401"), AgentError("winrm_fault", "fault"),
                    AgentError("agent_output_invalid", "garbage")):
        host = Host([response(STOPPED), applied(STARTING), failure, waited(STARTED)])
        result = run(host)
        assert result["reason"] == failure.code and len(host.requests) == 3 and host.resets == 0


def test_a_failing_reset_is_reported_as_its_own_error():
    class Refusing(Host):
        def reset(self):
            raise AgentError("auth_failed", "401 on reconnect")

    host = Refusing([response(STOPPED), applied(STARTING), LOST, waited(STARTED)])
    assert run(host)["reason"] == "auth_failed"


def test_service_start_wait_is_retried_like_any_wait():
    stopped_service = observation([inst(1, state=None)], smtp=service("Stopped"))
    host = Host([response(stopped_service), applied(STARTING), LOST, waited(STARTED)])
    assert run(host).get("failed") is not True and host.resets == 1
