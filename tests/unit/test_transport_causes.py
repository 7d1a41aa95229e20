"""The cause of a connection failure is named before the 200-character quote cuts it off.

requests puts the reason (refused, timed out, cut, untrusted certificate) at
the end of a long message; the fleet report shows the first 200 characters.
These are the messages Ansible's winrm connection raised against the
simulator, verbatim apart from the port.
"""

from __future__ import annotations

import pytest
from ansible.errors import AnsibleConnectionFailure

from ansible_collections.mailops.iis_smtp.plugins.plugin_utils import _protocol as p
from ansible_collections.mailops.iis_smtp.plugins.plugin_utils import _transport as t

REFUSED = ("basic: HTTPConnectionPool(host='127.0.0.1', port=52881): Max retries exceeded with url: /wsman "
           "(Caused by NewConnectionError(\"HTTPConnection(host='127.0.0.1', port=52881): Failed to establish "
           "a new connection: [Errno 111] Connection refused\"))")
READ_TIMEOUT = ("winrm connection error: HTTPConnectionPool(host='127.0.0.1', port=34969): Read timed out. "
                "(read timeout=3)")
CUT = ("('Connection broken: IncompleteRead(1564 bytes read, 1564 more expected)', "
       "IncompleteRead(1564 bytes read, 1564 more expected))")
UNTRUSTED = ("basic: HTTPSConnectionPool(host='127.0.0.1', port=40001): Max retries exceeded with url: /wsman "
             "(Caused by SSLError(SSLCertVerificationError(1, '[SSL: CERTIFICATE_VERIFY_FAILED] certificate "
             "verify failed: unable to get local issuer certificate (_ssl.c:1000)')))")


@pytest.mark.parametrize("text,cause", [
    (REFUSED, "connection refused"),
    (READ_TIMEOUT, "no answer within the read timeout"),
    (CUT, "connection cut mid-response"),
    (UNTRUSTED, "TLS certificate not trusted"),
])
def test_the_cause_leads_the_message(text: str, cause: str) -> None:
    err = t.classify_exception(AnsibleConnectionFailure(text))
    assert err.code == "connection_failed"
    assert err.message.startswith("could not talk to the host (%s): " % cause)


def test_an_unknown_cause_adds_nothing() -> None:
    err = t.classify_exception(AnsibleConnectionFailure("plain failure"))
    assert err.message == "could not talk to the host: plain failure"


def test_a_truncated_response_says_why_it_did_not_decode() -> None:
    # What the agent line looks like when the connection drops halfway through it.
    with pytest.raises(p.AgentError) as err:
        p.parse_output(0, b"MAILOPS-AGENT-1:eyJwcm90b2NvbCI6IDF9a", b"")
    assert err.value.code == "agent_output_invalid"
    assert err.value.message.startswith("the agent response did not decode to JSON (Invalid base64-encoded string: "
                                        "number of data characters (21) cannot be 1 more than a multiple of 4): ")
