"""WS-Management as Windows speaks it: the SOAP envelopes, addressing and faults.

Both kinds of shell the simulator serves are WinRS shells on ``POST /wsman``:
the ``cmd`` shell of Ansible's ``winrm`` connection and the PowerShell
Remoting shell of its ``psrp`` connection. What they share (reading a request,
writing an answer, the faults Windows sends and their codes) lives here, so
that the shell kinds (``server.py``, ``psrp.py``) differ only in what a
command is.
"""

from __future__ import annotations

import base64
import re
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from dataclasses import dataclass, field
from xml.sax.saxutils import escape, quoteattr

NS_SOAP = "http://www.w3.org/2003/05/soap-envelope"
NS_ADDRESSING = "http://schemas.xmlsoap.org/ws/2004/08/addressing"
NS_WSMAN = "http://schemas.dmtf.org/wbem/wsman/1/wsman.xsd"
NS_SHELL = "http://schemas.microsoft.com/wbem/wsman/1/windows/shell"
NS_TRANSFER = "http://schemas.xmlsoap.org/ws/2004/09/transfer"
NS_FAULT = "http://schemas.microsoft.com/wbem/wsman/1/wsmanfault"

CMD_RESOURCE_URI = "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/cmd"
PSRP_RESOURCE_URI = "http://schemas.microsoft.com/powershell/Microsoft.PowerShell"
ANONYMOUS = "http://schemas.xmlsoap.org/ws/2004/08/addressing/role/anonymous"
FAULT_ACTION = "http://schemas.dmtf.org/wbem/wsman/1/wsman/fault"
COMMAND_STATE_DONE = NS_SHELL + "/CommandState/Done"
COMMAND_STATE_RUNNING = NS_SHELL + "/CommandState/Running"

ACTIONS = {
    NS_TRANSFER + "/Create": "Create",
    NS_TRANSFER + "/Delete": "Delete",
    NS_SHELL + "/Command": "Command",
    NS_SHELL + "/Send": "Send",
    NS_SHELL + "/Receive": "Receive",
    NS_SHELL + "/Signal": "Signal",
}

# HRESULTs carried in wsmanfault:WSManFault/@Code.
E_NOTIMPL = 0x80004001
E_FAIL = 0x80004005
ERROR_WSMAN_INVALID_SELECTORS = 0x8033805B

# ERROR_WSMAN_OPERATION_TIMEDOUT (2150858793): pywinrm recognises a Receive
# timeout by this code alone and quietly sends the next Receive.
ERROR_WSMAN_OPERATION_TIMEDOUT = 0x80338029
TIMED_OUT_MESSAGE = "The WS-Management service cannot complete the operation within the time specified in OperationTimeout."
# The WinRM service's own refusals (wsmerror.h; sources in docs/windows-facts.md).
ERROR_WSMAN_SCHEMA_VALIDATION_ERROR = 0x80338041
ERROR_WSMAN_QUOTA_MAX_SHELLS = 0x803381A5
ERROR_WSMAN_QUOTA_MAX_OPERATIONS = 0x803381A6
NS_WMI_ERROR = "http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/MSFT_WmiError"

# What WinRM assumes when a request carries no w:OperationTimeout.
DEFAULT_OPERATION_TIMEOUT_S = 20.0
STREAM_CHUNK = 32 * 1024


class WsmanFault(Exception):
    """A request that is answered with a WS-Management fault (HTTP 500).

    ``detail`` is the fault detail's message when Windows words it apart from
    the reason; ``wmi_error`` puts the code in an ``MSFT_WmiError`` detail
    instead of a ``WSManFault`` one, as Windows does for some quota faults
    (Ansible's winrm connection reads the code from there).
    """

    def __init__(
        self,
        message: str,
        code: int = E_FAIL,
        subcode: str = "w:InternalError",
        sender: bool = False,
        *,
        detail: str | None = None,
        wmi_error: bool = False,
    ):
        super().__init__(message)
        self.message = message
        self.code = code
        self.subcode = subcode
        self.sender = sender
        self.detail = detail or message
        self.wmi_error = wmi_error


def shells_quota_fault(limit: int) -> WsmanFault:
    """MaxShellsPerUser reached: Windows' QuotaLimit fault, worded as Windows words it."""
    return WsmanFault(
        "The WS-Management service cannot process the request. The maximum number of concurrent shells for this user "
        "has been exceeded. Close existing shells or raise the quota for this user.",
        code=ERROR_WSMAN_QUOTA_MAX_SHELLS,
        subcode="w:QuotaLimit",
        sender=True,
        detail=f"The WS-Management service cannot process the request. This user is allowed a maximum number of {limit} "
        "concurrent shells, which has been exceeded. Close existing shells or raise the quota for this user.",
    )


def operations_quota_fault(limit: int) -> WsmanFault:
    """MaxConcurrentOperationsPerUser reached; the code travels in an MSFT_WmiError, where Ansible looks for it."""
    return WsmanFault(
        f"The WS-Management service cannot process the request. This user is allowed a maximum number of {limit} "
        "concurrent operations, which has been exceeded. Close existing operations for this user, or raise the quota for this user.",
        code=ERROR_WSMAN_QUOTA_MAX_OPERATIONS,
        wmi_error=True,
    )


def unsupported(what: str) -> WsmanFault:
    return WsmanFault(
        f"not supported by the simulator: {what}",
        code=E_NOTIMPL,
        subcode="w:ActionNotSupported",
        sender=True,
    )


# --------------------------------------------------------------------------- XML


@dataclass(frozen=True)
class Request:
    """The parts of a WS-Management request the simulator acts on."""

    action_uri: str
    message_id: str
    resource_uri: str
    shell_id: str | None
    body: ET.Element
    operation_timeout: str = ""
    options: Mapping[str, str] = field(default_factory=dict)


def qname(ns: str, tag: str) -> str:
    return f"{{{ns}}}{tag}"


def parse_request(xml: bytes) -> Request:
    """Read the envelope; a malformed one is a sender fault, not a crash."""
    try:
        root = ET.fromstring(xml)
    except ET.ParseError as exc:
        raise WsmanFault(
            f"the request is not well-formed XML: {exc}",
            subcode="w:SchemaValidationError",
            sender=True,
        ) from exc
    if root.tag != qname(NS_SOAP, "Envelope"):
        raise WsmanFault(
            "the request is not a SOAP 1.2 envelope",
            subcode="w:SchemaValidationError",
            sender=True,
        )
    header = root.find(qname(NS_SOAP, "Header"))
    body = root.find(qname(NS_SOAP, "Body"))
    if header is None or body is None:
        raise WsmanFault(
            "the envelope has no Header or no Body",
            subcode="w:SchemaValidationError",
            sender=True,
        )

    def text(path: str) -> str:
        node = header.find(path)
        return (node.text or "").strip() if node is not None else ""

    shell_id = None
    for selector in header.iterfind(f"{qname(NS_WSMAN, 'SelectorSet')}/{qname(NS_WSMAN, 'Selector')}"):
        if selector.get("Name") == "ShellId":
            shell_id = (selector.text or "").strip()
    options = {
        str(option.get("Name")): (option.text or "").strip()
        for option in header.iterfind(f"{qname(NS_WSMAN, 'OptionSet')}/{qname(NS_WSMAN, 'Option')}")
    }
    return Request(
        options=options,
        action_uri=text(qname(NS_ADDRESSING, "Action")),
        message_id=text(qname(NS_ADDRESSING, "MessageID")),
        resource_uri=text(qname(NS_WSMAN, "ResourceURI")),
        shell_id=shell_id,
        body=body,
        operation_timeout=text(qname(NS_WSMAN, "OperationTimeout")),
    )


_DURATION = re.compile(r"P(?:(\d+)D)?(?:T(?=\d)(?:(\d+)H)?(?:(\d+)M)?(?:(\d+(?:\.\d+)?)S)?)?")


def parse_duration(value: str, what: str = "w:OperationTimeout") -> float:
    """Seconds in an xs:duration as WS-Management sends it (``PT20.000S``, ``PT1M``, ``P0DT20S``)."""
    match = _DURATION.fullmatch(value.strip())
    if match is None or value.strip() in ("P", ""):
        raise WsmanFault(
            f"{what} {value!r} is not an xs:duration such as PT20.000S",
            code=ERROR_WSMAN_SCHEMA_VALIDATION_ERROR,
            subcode="w:SchemaValidationError",
            sender=True,
        )
    days, hours, minutes, seconds = match.groups()
    return int(days or 0) * 86400.0 + int(hours or 0) * 3600.0 + int(minutes or 0) * 60.0 + float(seconds or 0)


def operation_timeout_s(request: Request) -> float:
    return parse_duration(request.operation_timeout) if request.operation_timeout else DEFAULT_OPERATION_TIMEOUT_S


_ENVELOPE_OPEN = (
    '<s:Envelope xml:lang="en-US"'
    f' xmlns:s="{NS_SOAP}" xmlns:a="{NS_ADDRESSING}" xmlns:x="{NS_TRANSFER}"'
    f' xmlns:w="{NS_WSMAN}" xmlns:rsp="{NS_SHELL}"'
    ' xmlns:p="http://schemas.microsoft.com/wbem/wsman/1/wsman.xsd">'
)


def envelope(action: str, relates_to: str, body: str) -> bytes:
    header = (
        "<s:Header>"
        f"<a:Action>{escape(action)}</a:Action>"
        f"<a:MessageID>uuid:{str(uuid.uuid4()).upper()}</a:MessageID>"
        f"<a:To>{ANONYMOUS}</a:To>"
        f"<a:RelatesTo>{escape(relates_to)}</a:RelatesTo>"
        "</s:Header>"
    )
    return f"{_ENVELOPE_OPEN}{header}<s:Body>{body}</s:Body></s:Envelope>".encode()


def fault_envelope(fault: WsmanFault, relates_to: str, machine: str) -> bytes:
    side = "s:Sender" if fault.sender else "s:Receiver"
    detail = _wmi_error_detail(fault) if fault.wmi_error else _wsman_fault_detail(fault, machine)
    body = (
        "<s:Fault>"
        f"<s:Code><s:Value>{side}</s:Value><s:Subcode><s:Value>{escape(fault.subcode)}</s:Value></s:Subcode></s:Code>"
        f'<s:Reason><s:Text xml:lang="en-US">{escape(fault.message)}</s:Text></s:Reason>'
        f"<s:Detail>{detail}</s:Detail>"
        "</s:Fault>"
    )
    return envelope(FAULT_ACTION, relates_to, body)


def _wsman_fault_detail(fault: WsmanFault, machine: str) -> str:
    return (
        f'<f:WSManFault xmlns:f="{NS_FAULT}" Code="{fault.code}" Machine={quoteattr(machine)}>'
        f"<f:Message>{escape(fault.detail)}</f:Message>"
        "</f:WSManFault>"
    )


def _wmi_error_detail(fault: WsmanFault) -> str:
    """The CIM error Windows sends for a refused WinRS Command (recorded in pywinrm's tests)."""
    return (
        f'<p:MSFT_WmiError xmlns:p="{NS_WMI_ERROR}">'
        "<p:CIMStatusCode>27</p:CIMStatusCode>"
        f"<p:Message>{escape(fault.detail)}</p:Message>"
        f"<p:MessageID>HRESULT 0x{fault.code:08x}</p:MessageID>"
        "<p:error_Category>30</p:error_Category>"
        f"<p:error_Code>{fault.code}</p:error_Code>"
        "<p:error_Type>HRESULT</p:error_Type>"
        f"<p:error_WindowsErrorMessage>{escape(fault.detail)}</p:error_WindowsErrorMessage>"
        "</p:MSFT_WmiError>"
    )


def stream_elements(name: str, command_id: str, data: bytes) -> list[str]:
    return [
        f'<rsp:Stream Name="{name}" CommandId="{command_id}">{base64.b64encode(data[i : i + STREAM_CHUNK]).decode()}</rsp:Stream>'
        for i in range(0, len(data), STREAM_CHUNK)
    ]


@dataclass(frozen=True)
class Reply:
    """What one SOAP request is answered with."""

    status: int
    body: bytes
    cut: bool = False
