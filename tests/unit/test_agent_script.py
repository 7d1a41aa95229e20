"""Static checks of the PowerShell agent, the one file that runs on Windows.

No PowerShell runs where these tests run, so the agent is never executed here.
What can be checked without it is checked: that it parses (as shipped and as
the transport sends it), that it only calls Windows PowerShell 5.1 commands
with 5.1 parameters, that it uses no PowerShell 7 syntax and no dynamic code,
that it agrees with docs/agent-protocol.md on every closed set and key name,
and that the command line it travels in fits the Windows limit.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import tree_sitter
import tree_sitter_pwsh
from ansible.plugins.loader import shell_loader

from ansible_collections.mailops.iis_smtp.plugins.plugin_utils._transport import (
    APPLY_ONLY_BEGIN,
    APPLY_ONLY_END,
    COMMAND_PREFIX,
    MAX_COMMAND_CHARS,
    agent_for,
    agent_sha256,
    bootstrap_script,
    build_call,
    normalise_agent,
)

REPO = Path(__file__).resolve().parents[2]
AGENT_PATH = REPO / "plugins" / "plugin_utils" / "agent.ps1"
BOOTSTRAP_PATH = REPO / "plugins" / "plugin_utils" / "bootstrap.ps1"
PROTOCOL_DOC = REPO / "docs" / "agent-protocol.md"

# The agent travels on stdin with every call: its size is bytes on the wire
# for every host of every run. It grew from 8,530 to about 11,600 bytes when
# it learnt to wait for a service it started, to check that a ServerCommand
# moved ServerState, to wait only for what the plan watches and to validate
# exactly; the margin is for the next reviewed change, not for drift.
AGENT_BUDGET_BYTES = 12000
# An observe call (every compliant host, every audit) ships the agent without
# its apply-only lines: 6,480 bytes when that split was made.
OBSERVE_AGENT_BUDGET_BYTES = 7000
# The whole command line; cmd.exe would allow 8,191, the rest is margin for
# whatever a connection plugin or WinRS adds.
BOOTSTRAP_COMMAND_BUDGET = 2000
# What the bootstrap may call: it only decodes stdin and hashes.
BOOTSTRAP_COMMANDS = {"Set-StrictMode": frozenset({"Version"}), "ConvertFrom-Json": frozenset({"InputObject"})}

# Windows PowerShell 5.1 commands the agent may call, each with the parameters
# it may pass. Parameters are the 5.1 ones: PowerShell 7 additions such as
# ConvertFrom-Json -AsHashtable, ConvertTo-Json -EnumsAsStrings or
# ForEach-Object -Parallel are deliberately absent.
ALLOWED_COMMANDS: dict[str, frozenset[str]] = {
    "Set-StrictMode": frozenset({"Version"}),
    "Get-WmiObject": frozenset({"Class", "Filter", "Namespace", "Property"}),
    "Get-Item": frozenset({"LiteralPath"}),
    "Sort-Object": frozenset({"Property", "Descending"}),
    "Get-Service": frozenset({"Name"}),
    "Start-Sleep": frozenset({"Milliseconds"}),
    "ConvertFrom-Json": frozenset({"InputObject"}),
    "ConvertTo-Json": frozenset({"InputObject", "Depth", "Compress"}),
    "sc.exe": frozenset(),
}

# .NET types the agent may name; all exist in .NET Framework 4.5 (the floor of
# Windows PowerShell 5.1). A type outside this list needs a conscious review.
ALLOWED_TYPES = frozenset({
    "string", "int", "bool", "ADSI",
    "Runtime.InteropServices.COMException", "ComponentModel.Win32Exception",
    "Management.Automation.PSCustomObject",
    "Collections.IList", "Collections.ArrayList",
    "Security.Principal.WindowsPrincipal", "Security.Principal.WindowsIdentity",
    "Security.Principal.WindowsBuiltInRole",
    "Text.Encoding", "Convert", "Diagnostics.Stopwatch",
})

# Ways to run text as code; the agent never needs one.
FORBIDDEN_MEMBERS = frozenset({"InvokeScript", "NewScriptBlock", "InvokeCommand", "Create", "AddScript"})
# Node types of syntax that Windows PowerShell 5.1 does not have.
PS7_NODE_TYPES = {
    "pipeline_chain_tail": "&& / || pipeline chains",
    "null_coalesce_expression": "?? operator",
    "ternary_expression": "ternary ? : operator",
}
PS7_ASSIGNMENT_OPERATORS = frozenset({"??="})

# The closed sets of the protocol, as the agent names them.
AGENT_SETS = {"op": "Ops", "start_mode": "StartModes", "command": "Commands", "via": "Vias", "service": "Services"}


# --- the checker ---------------------------------------------------------


_LANGUAGE = tree_sitter.Language(tree_sitter_pwsh.language())


def parse(source: str) -> tree_sitter.Tree:
    return tree_sitter.Parser(_LANGUAGE).parse(source.encode("utf-8"))


def walk(node: tree_sitter.Node) -> Iterator[tree_sitter.Node]:
    yield node
    for child in node.children:
        yield from walk(child)


def text(node: tree_sitter.Node) -> str:
    return (node.text or b"").decode("utf-8")


def syntax_problems(source: str) -> list[str]:
    """Every ERROR or MISSING node, as `line:column: what`, 1-based like an editor."""
    problems = []
    for node in walk(parse(source).root_node):
        if node.is_error or node.is_missing:
            line, column = node.start_point
            what = "missing %s" % node.type if node.is_missing else "cannot parse %r" % text(node)[:40]
            problems.append("%d:%d: %s" % (line + 1, column + 1, what))
    return problems


def command_uses(source: str) -> list[tuple[str, list[str]]]:
    """(name, parameters) of every command invocation; `&` of anything but a plain name is `<dynamic>`."""
    uses: list[tuple[str, list[str]]] = []
    for node in walk(parse(source).root_node):
        if node.type != "command":
            continue
        name_node = node.child_by_field_name("command_name")
        if name_node is None:
            uses.append(("<dynamic>", []))
            continue
        if name_node.type == "command_name_expr":
            inner = name_node.named_children
            name = text(inner[0]) if len(inner) == 1 and inner[0].type == "command_name" else "<dynamic>"
        else:
            name = text(name_node)
        if any(child.type == "command_invocation_operator" and text(child) == "." for child in node.children):
            name = "<dot-source>"
        params = [text(n).lstrip("-").rstrip(":") for n in walk(node) if n.type == "command_parameter"]
        uses.append((name, params))
    return uses


def defined_functions(source: str) -> set[str]:
    return {
        text(child)
        for node in walk(parse(source).root_node) if node.type == "function_statement"
        for child in node.children if child.type == "function_name"
    }


def command_violations(source: str) -> list[str]:
    own = defined_functions(source)
    violations = []
    for name, params in command_uses(source):
        if name in own:
            continue
        if name not in ALLOWED_COMMANDS:
            violations.append("command %s is not allowed" % name)
            continue
        violations.extend(
            "%s -%s is not an allowed parameter" % (name, param)
            for param in params if param not in ALLOWED_COMMANDS[name]
        )
    return violations


def ps7_violations(source: str) -> list[str]:
    violations = []
    for node in walk(parse(source).root_node):
        if node.type in PS7_NODE_TYPES:
            violations.append("%s at line %d" % (PS7_NODE_TYPES[node.type], node.start_point[0] + 1))
        elif node.type == "assignment_operator" and text(node) in PS7_ASSIGNMENT_OPERATORS:
            violations.append("%s at line %d" % (text(node), node.start_point[0] + 1))
    return violations


def type_names(source: str) -> set[str]:
    return {
        text(node.named_children[0])
        for node in walk(parse(source).root_node) if node.type == "type_literal"
    }


def member_names(source: str) -> set[str]:
    return {text(node) for node in walk(parse(source).root_node) if node.type == "member_name"}


def string_values(node: tree_sitter.Node) -> list[str]:
    """The values of the plain string literals under `node`, quotes removed."""
    return [text(n)[1:-1] for n in walk(node) if n.type == "string_literal" and text(n)[:1] in "'\""]


def top_level_assignment(source: str, variable: str) -> tree_sitter.Node:
    for node in parse(source).root_node.named_children[1].named_children:
        if node.type != "pipeline":
            continue
        assignment = node.named_children[0]
        if assignment.type == "assignment_expression" and text(assignment).startswith("$%s =" % variable):
            return assignment.child_by_field_name("value") or assignment
    raise AssertionError("the agent assigns no $%s at top level" % variable)


def fields_read(source: str) -> set[str]:
    """The names the agent reads from the request: string arguments of Get-Field."""
    return {
        value
        for node in walk(parse(source).root_node)
        if node.type == "command" and text(node.child_by_field_name("command_name") or node) == "Get-Field"
        for value in string_values(node)
    }


def hash_keys(source: str) -> set[str]:
    keys = set()
    for node in walk(parse(source).root_node):
        if node.type == "key_expression":
            key = text(node)
            keys.add(key.strip("'\""))
    return keys


# --- the protocol document -----------------------------------------------


def doc_text() -> str:
    return PROTOCOL_DOC.read_text(encoding="utf-8")


def doc_section(title: str) -> str:
    match = re.search(r"^## %s\n(.*?)(?=^## |\Z)" % re.escape(title), doc_text(), re.S | re.M)
    assert match, "docs/agent-protocol.md has no section %r" % title
    return match.group(1)


def doc_steps_table() -> list[str]:
    """The rows of the table of steps (the one headed `| op | fields |`)."""
    match = re.search(r"^\| op \| fields \|.*\n\|[-|]+\|\n((?:\|.*\n)+)", doc_text(), re.M)
    assert match, "docs/agent-protocol.md has no table of steps"
    return match.group(1).splitlines()


def doc_closed_sets() -> dict[str, set[str]]:
    """Field -> allowed values, read from the table of steps: `field` (`a`, `b`)."""
    sets: dict[str, set[str]] = {"op": set()}
    for row in doc_steps_table():
        op, fields = re.match(r"^\| `(\w+)` \| (.*?) \|", row).groups()  # type: ignore[union-attr]
        sets["op"].add(op)
        for field, values in re.findall(r"`(\w+)` \(([^)]*)\)", fields):
            found = set(re.findall(r"`([\w-]+)`", values))
            if found:
                sets.setdefault(field, set()).update(found)
    return sets


def doc_json_keys(section: str) -> set[str]:
    return set(re.findall(r'"([A-Za-z_]+)"\s*:', doc_section(section)))


def doc_json_examples(section: str) -> list[dict[str, object]]:
    return [json.loads(block) for block in re.findall(r"```json\n(.*?)```", doc_section(section), re.S)]


# --- fixtures ------------------------------------------------------------


@pytest.fixture(scope="module")
def agent() -> str:
    return AGENT_PATH.read_text(encoding="utf-8-sig")


@pytest.fixture(scope="module")
def normalised(agent: str) -> str:
    return normalise_agent(agent)


def apply_request(count: int) -> dict[str, object]:
    """An apply as large as a big host gets: one instance step per virtual server."""
    steps: list[dict[str, object]] = [
        {"op": "set_start_mode", "service": "SMTPSVC", "start_mode": "delayed-auto"},
        {"op": "start_service", "service": "SMTPSVC"},
        {"op": "continue_service", "service": "SMTPSVC"},
    ]
    steps += [
        {"op": "instance", "id": 100 + n, "command": "continue", "via": ["method", "server_command"]}
        for n in range(count)
    ]
    return {"protocol": 1, "action": "apply", "steps": steps, "settle_timeout_s": 600, "poll_ms": 500}


# --- syntax --------------------------------------------------------------


def test_checker_finds_a_known_good_script_clean() -> None:
    assert syntax_problems("function F($a) {\n    if ($a) { 'yes' } else { \"no $a\" }\n}\nF 1\n") == []


@pytest.mark.parametrize(
    ("breakage", "line"),
    [
        (lambda s: s.replace("function Test-Stable($Observation, $Watch) {\n", "function Test-Stable($Observation, $Watch) {\n    if ($true) {\n", 1), None),
        (lambda s: s.replace("'0x{0:X8}'", "'0x{0:X8}", 1), None),
        (lambda s: s.replace("[Convert]::ToBase64String(", "[Convert]::ToBase64String(\n", 1).rstrip(")\n") + "\n", None),
        (lambda s: s.replace("    $r\n}\n\nfunction Get-ServiceInfo", "    $r\n\nfunction Get-ServiceInfo", 1), None),
    ],
    ids=["extra-open-brace", "unterminated-string", "missing-paren", "missing-close-brace"],
)
def test_checker_catches_a_broken_agent(agent: str, breakage, line) -> None:
    broken = breakage(agent)
    assert broken != agent, "the breakage did not apply; the agent changed shape"
    problems = syntax_problems(broken)
    assert problems, "the syntax checker accepted a broken agent"
    assert all(re.match(r"^\d+:\d+: ", p) for p in problems)


def test_agent_file_parses(agent: str) -> None:
    assert syntax_problems(agent) == []


def test_agent_as_sent_parses(normalised: str) -> None:
    assert syntax_problems(normalised) == []


def test_normalising_changes_nothing_but_comments(agent: str, normalised: str) -> None:
    # Same syntax tree once comments are set aside: stripping lines did not
    # join, split or break a statement.
    shipped = re.sub(r" ?\(comment\)", "", str(parse(agent).root_node))
    assert shipped == str(parse(normalised).root_node)


def test_agent_avoids_what_normalisation_would_break(agent: str) -> None:
    lines = agent.splitlines()
    assert not any(line.rstrip().endswith("`") for line in lines), "line continuation"
    assert not re.search(r"@['\"]\s*$", agent, re.M), "here-string"
    assert "<#" not in agent, "block comment"
    for node in walk(parse(agent).root_node):
        if node.type == "comment":
            row, column = node.start_point
            assert lines[row][:column].strip() == "", "comment after code on line %d" % (row + 1)


def test_agent_is_ascii(agent: str) -> None:
    agent.encode("ascii")


# --- the bootstrap: the only script on the command line -----------------


@pytest.fixture(scope="module")
def bootstrap() -> str:
    return BOOTSTRAP_PATH.read_text(encoding="utf-8-sig")


@pytest.fixture(scope="module")
def bootstrap_sent(normalised: str) -> str:
    return bootstrap_script(normalised)


def test_bootstrap_parses_as_shipped_and_as_sent(bootstrap: str, bootstrap_sent: str) -> None:
    assert syntax_problems(bootstrap) == []
    assert syntax_problems(bootstrap_sent) == []


def test_bootstrap_is_ascii_and_normalisation_safe(bootstrap: str) -> None:
    bootstrap.encode("ascii")
    assert "<#" not in bootstrap and not re.search(r"@['\"]\s*$", bootstrap, re.M)
    assert not any(line.rstrip().endswith("`") for line in bootstrap.splitlines())


def test_bootstrap_carries_the_hash_of_the_agent_it_runs(normalised: str, bootstrap_sent: str) -> None:
    digest = agent_sha256(normalised)
    assert re.fullmatch(r"[0-9A-F]{64}", digest)
    assert "if ($hash -cne '%s') {" % digest in bootstrap_sent
    assert "AGENT_SHA256" not in bootstrap_sent


def bootstrap_statements(bootstrap: str) -> list[str]:
    (body,) = [n for n in parse(bootstrap).root_node.named_children if n.type == "statement_list"]
    return [text(n) for n in body.named_children if n.type != "comment"]


def test_bootstrap_starts_strict_and_calls_only_what_it_needs(bootstrap: str) -> None:
    statements = bootstrap_statements(bootstrap)
    assert statements[:3] == [
        "Set-StrictMode -Version 2", "$ErrorActionPreference = 'Stop'", "$ProgressPreference = 'SilentlyContinue'"]
    for name, params in command_uses(bootstrap):
        if name in ("&", "<dynamic>"):
            continue
        assert name in BOOTSTRAP_COMMANDS, name
        assert set(params) <= BOOTSTRAP_COMMANDS[name], (name, params)


def test_bootstrap_runs_code_only_after_the_hash_check(bootstrap: str) -> None:
    # The one place text becomes code: the last statement, after the check
    # that throws when the agent is not the one the controller hashed.
    statements = bootstrap_statements(bootstrap)
    assert statements[-1] == "& ([ScriptBlock]::Create($agent)) ([string]$payload.request)"
    assert statements[-2].startswith("if ($hash -cne 'AGENT_SHA256') {\nthrow ")
    assert sum("ScriptBlock" in line for line in statements) == 1


def test_command_line_is_the_bootstrap_alone_whatever_the_request(normalised: str) -> None:
    small, small_stdin = build_call({"protocol": 1, "action": "observe"}, normalised)
    large, large_stdin = build_call(apply_request(1000), normalised)
    assert small == large
    assert small.startswith(COMMAND_PREFIX)
    assert len(small) <= BOOTSTRAP_COMMAND_BUDGET < MAX_COMMAND_CHARS
    assert len(large_stdin) > len(small_stdin) > len(normalised)


# --- what it calls -------------------------------------------------------


def test_agent_starts_strict(agent: str) -> None:
    root = parse(agent).root_node
    assert root.named_children[0].type == "param_block"
    assert text(root.named_children[0]) == "param([Parameter(Mandatory = $true)][string]$RequestB64)"
    statements = [n for n in root.named_children[1].named_children if n.type != "comment"]
    assert [text(n) for n in statements[:3]] == [
        "Set-StrictMode -Version 2", "$ErrorActionPreference = 'Stop'", "$ProgressPreference = 'SilentlyContinue'"]


def test_agent_calls_only_allowed_commands(agent: str) -> None:
    assert command_violations(agent) == []
    used = {name for name, _params in command_uses(agent)} - defined_functions(agent)
    # A command left in the list but no longer used is a permission nobody reviews.
    assert used == set(ALLOWED_COMMANDS)


@pytest.mark.parametrize(
    "snippet",
    [
        "Invoke-Expression 'x'",
        "iex 'x'",
        "Add-Type -TypeDefinition 'x'",
        "gci",
        "ConvertFrom-Json -InputObject '{}' -AsHashtable",
        "ConvertTo-Json -InputObject 1 -EnumsAsStrings",
        "1..2 | ForEach-Object -Parallel { $_ }",
        "& $command",
        ". $script",
        "& { 'x' }",
    ],
)
def test_command_check_catches(snippet: str) -> None:
    assert command_violations(snippet)


def test_agent_uses_no_powershell_7_syntax(agent: str) -> None:
    assert ps7_violations(agent) == []


@pytest.mark.parametrize("snippet", ["a && b", "a || b", "$x ?? 1", "$x ??= 1", "$a ? 1 : 2"])
def test_powershell_7_check_catches(snippet: str) -> None:
    assert syntax_problems(snippet) == []
    assert ps7_violations(snippet)


def test_null_conditional_member_access_does_not_parse() -> None:
    # `?.` needs no check of its own: 5.1's grammar, like this one, has no such token.
    assert syntax_problems("${x}?.y")


def test_agent_names_only_allowed_types(agent: str) -> None:
    assert type_names(agent) == ALLOWED_TYPES


def test_agent_builds_no_code_from_text(agent: str) -> None:
    assert member_names(agent) & FORBIDDEN_MEMBERS == set()
    assert "scriptblock" not in {t.lower() for t in type_names(agent)}


# --- agreement with the protocol document --------------------------------


def test_closed_sets_match_the_protocol(agent: str) -> None:
    sets = doc_closed_sets()
    assert set(sets) >= {"op", "start_mode", "command", "via", "service"}
    for field, variable in AGENT_SETS.items():
        assert sorted(string_values(top_level_assignment(agent, variable))) == sorted(sets[field]), field
    # start_service may start IISADMIN alone; every other service step is SMTPSVC's.
    assert sets["service"] == {"SMTPSVC", "IISADMIN"}
    assert "-cne 'SMTPSVC'" in agent
    # The observe agent knows observe only; the apply-only lines add apply.
    assert sorted(string_values(top_level_assignment(agent, "Actions"))) == ["observe"]
    assert "\n$Actions = @('observe', 'apply')\n" in "\n" + apply_only(agent) + "\n"


def test_control_table_matches_the_protocol(agent: str) -> None:
    controls = text(top_level_assignment(agent, "Controls"))
    entries = re.findall(r"'(\w+)' = @\('(\w+)', (\d+)\)", controls)
    assert {command for command, _method, _code in entries} == doc_closed_sets()["command"]
    (row,) = [r for r in doc_steps_table() if r.startswith("| `instance` |")]
    for command, method, code in entries:
        assert "`%s()`" % method in row
        assert "%s %s" % (code, command) in row


def test_agent_writes_every_response_key_of_the_protocol(agent: str) -> None:
    keys = doc_json_keys("Response")
    assert {"protocol", "observation", "server_state", "attempts", "delayed_auto_start"} <= keys
    missing = keys - hash_keys(agent)
    assert missing == set()


def test_agent_writes_no_response_key_outside_the_protocol(agent: str) -> None:
    # Internal tables and the parsed steps are the only other hashtables.
    internal = doc_closed_sets()["command"] | {"op", "id", "command", "via", "service", "start_mode"}
    assert hash_keys(agent) - doc_json_keys("Response") - internal == set()


def test_agent_reads_every_request_key_of_the_protocol(agent: str) -> None:
    keys = doc_json_keys("Request")
    assert {"protocol", "action", "steps", "settle_timeout_s", "poll_ms", "op", "via"} <= keys
    assert keys - fields_read(agent) == set()


def test_protocol_examples_are_valid_json() -> None:
    # The key checks above read these examples; a broken example would hide keys.
    assert len(doc_json_examples("Request")) == 2
    (response,) = doc_json_examples("Response")
    assert set(response) == {"protocol", "agent_version", "action", "ok", "error", "observation",
                             "steps", "settled", "elapsed_ms"}


def test_response_line_prefix_matches_the_protocol(agent: str) -> None:
    prefix = re.search(r"^   (MAILOPS-AGENT-\d+:)<base64", doc_section("How a call travels"), re.M)
    assert prefix
    assert string_values(parse(agent).root_node).count(prefix.group(1)) == 1


# --- what it must not do to Windows (the simulator plays these rules; only these checks tie them to the agent)


def function_body(source: str, name: str) -> str:
    for node in walk(parse(source).root_node):
        if node.type == "function_statement" and any(
                child.type == "function_name" and text(child) == name for child in node.children):
            return text(node)
    raise AssertionError("the agent defines no function %s" % name)


def test_agent_observe_reads_the_services_before_it_binds_the_metabase(agent: str) -> None:
    # An ADSI bind demand-starts a stopped IISADMIN: look at IISADMIN first, bind only while it runs.
    body = function_body(agent, "Get-Observation")
    services, guard, bind = (body.index(needle) for needle in (
        "Get-ServiceInfo 'IISADMIN'", "if ($iisadmin -cne 'Running') {", "[ADSI]'IIS://localhost/SMTPSVC'"))
    assert services < guard < bind
    assert body[guard:bind].count("} else {") == 1, "the bind is on the IISADMIN-running branch"
    assert "'iisadmin_not_running'" in body[guard:bind]


def test_agent_sends_a_service_control_only_from_the_state_it_is_for_and_then_waits(agent: str) -> None:
    body = function_body(agent, "Invoke-Way")
    check, start, wait = (body.index(needle) for needle in (
        "if ([string]$service.Status -cne $from) {", "$service.Start()", "while ([string]$service.Status -like '*Pending'"))
    assert check < start < wait
    assert "$Clock.ElapsedMilliseconds -lt $Limit" in body[wait:], "the wait is bounded by the deadline"


def test_agent_writes_server_command_only_to_a_running_smtpsvc_and_checks_it_moved(agent: str) -> None:
    body = function_body(agent, "Invoke-Way")
    guard, write, watch = (body.index(needle) for needle in (
        "if ($smtp -cne 'Running') {", "$entry.Put('ServerCommand'", "} while ($after -eq $before"))
    assert guard < write < watch
    assert "'no_effect'" in body[watch:]


def test_agent_reports_server_state_only_while_smtpsvc_can_own_it(agent: str) -> None:
    assert string_values(top_level_assignment(agent, "StateReadable")) == ["Running", "Paused", "Pause Pending",
                                                                           "Continue Pending"]
    assert "if ($ReadState -and $null -ne $state) {" in function_body(agent, "Get-InstanceInfo")


def test_agent_validates_exactly(agent: str) -> None:
    # PSObject lookup ignores case and -contains turns a one-element array into its element.
    assert "$property.Name -cne $Name" in function_body(agent, "Get-Field")
    assert "$Value -isnot [string] -or $Set -cnotcontains $Value" in function_body(agent, "Assert-In")
    assert "$action -isnot [string] -or $Actions -cnotcontains $action" in function_body(agent, "Invoke-Request")


def test_agent_settle_wait_honours_the_watch(agent: str) -> None:
    body = function_body(agent, "Test-Stable")
    assert "$null -eq $Watch -or $Watch.services -ccontains $name" in body
    assert "$null -eq $Watch -or $Watch.instances -contains $instance.id" in body


# --- size ----------------------------------------------------------------


def test_agent_stays_within_its_budget(normalised: str) -> None:
    assert len(normalised.encode("utf-8")) <= AGENT_BUDGET_BYTES


# --- the observe agent: the agent less its apply-only lines ---------------------


def apply_only(agent: str) -> str:
    """The apply-only lines of the agent (between the markers)."""
    kept, inside = [], False
    for line in agent.splitlines():
        if line.strip() == APPLY_ONLY_BEGIN:
            inside = True
        elif line.strip() == APPLY_ONLY_END:
            inside = False
        elif inside:
            kept.append(line)
    return "\n".join(kept)


APPLY_ONLY_FUNCTIONS = {"Assert-In", "Assert-Int", "Read-Step", "Read-Watch", "Read-ServerState", "Invoke-Way",
                        "Invoke-Step"}


def test_apply_only_markers_pair_up_at_full_lines(agent: str) -> None:
    markers = [line.strip() for line in agent.splitlines() if "mailops:apply-only" in line]
    assert markers, "the agent has apply-only lines"
    assert markers == [APPLY_ONLY_BEGIN, APPLY_ONLY_END] * (len(markers) // 2) and len(markers) % 2 == 0
    # Full comment lines, so that the agent as sent for apply is the whole file, normalised.
    assert agent_for(agent, "apply") == normalise_agent(agent)


def test_the_observe_agent_parses_and_defines_all_it_calls(agent: str) -> None:
    observe = agent_for(agent, "observe")
    assert syntax_problems(observe) == []
    defined = defined_functions(observe)
    assert defined.isdisjoint(APPLY_ONLY_FUNCTIONS) and defined_functions(agent) >= APPLY_ONLY_FUNCTIONS
    own = defined_functions(agent)
    called = {name for name, _params in command_uses(observe) if name in own}
    assert called <= defined, "the observe agent calls functions it was sent without: %s" % (called - defined)
    # No variable only the apply-only lines assign is read by what observe runs.
    for variable in ("Ops", "StartModes", "Commands", "Vias", "Services", "Controls"):
        assert not re.search(r"\$%s\b" % variable, observe), variable
    assert "Invoke-Step" not in observe and "settle_timeout_s" not in observe


def test_the_observe_agent_stays_within_its_budget(agent: str) -> None:
    observe = agent_for(agent, "observe")
    assert len(observe.encode("utf-8")) <= OBSERVE_AGENT_BUDGET_BYTES
    assert len(observe) < len(normalise_agent(agent)) * 0.6


def test_each_request_travels_with_its_agent(agent: str) -> None:
    observe_command, observe_stdin = build_call({"protocol": 1, "action": "observe"})
    apply_command, apply_stdin = build_call(apply_request(1))
    assert json.loads(observe_stdin)["agent"] == agent_for(agent, "observe")
    assert json.loads(apply_stdin)["agent"] == normalise_agent(agent)
    # Each bootstrap carries the hash of the agent it runs.
    assert observe_command != apply_command


def test_command_prefix_is_the_one_ansible_connections_recognise() -> None:
    # winrm and psrp treat a command starting with their shell plugin's own
    # prefix as already encoded; psrp then runs the decoded script in its runspace.
    shell = shell_loader.get("powershell")
    assert shell._encode_script("", strict_mode=False, preserve_rc=False) == COMMAND_PREFIX
