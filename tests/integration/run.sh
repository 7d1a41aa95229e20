#!/usr/bin/env bash
# The integration targets (tests/integration/targets/) against Windows hosts:
# `ansible-test windows-integration --inventory INVENTORY`, from this
# checkout's virtualenv, on the controller itself (no containers, no remote
# provisioning). `make real-host` runs it on a user's hosts; `make test` runs
# the same targets against the simulator (tests/e2e/test_integration_targets.py).
#
# ansible-test only runs a collection at ansible_collections/<ns>/<name>/, so
# the files git would ship are copied to a fixed temporary folder first.
#
# INVENTORY: an INI inventory (ansible-test copies it as one) whose group
# [windows] holds the hosts, with their connection variables.
#
# Usage: tests/integration/run.sh INVENTORY [ansible-test args, e.g. virtual_server -vvv]
# Environment: VENV (default .venv), IT_TREE (where the copy lives).
set -euo pipefail

repo="$(cd "$(dirname "$0")/../.." && pwd)"
inventory="$(realpath "${1:?usage: $0 INVENTORY [ansible-test args...]}")"
shift
venv="${VENV:-$repo/.venv}"
tree_root="${IT_TREE:-${TMPDIR:-/tmp}/mailops-iis_smtp-integration-$(printf '%s' "$repo" | cksum | cut -d' ' -f1)}"

if [[ ! -x "$venv/bin/ansible-test" ]]; then
    echo "real-host: no ansible-test in $venv; build it with make venv (or set VENV)" >&2
    exit 2
fi
if ! "$venv/bin/ansible-inventory" -i "$inventory" --graph windows >/dev/null 2>&1; then
    echo "real-host: $inventory has no group [windows]; put the Windows hosts to test in it" >&2
    exit 2
fi

# Two runs at once must not refresh the copy under each other.
mkdir -p "$tree_root"
exec 9>"$tree_root/.lock"
flock 9
collection="$("$repo/tests/copy_collection.sh" "$tree_root")"
cd "$collection"
PATH="$venv/bin:$PATH" "$venv/bin/ansible-test" windows-integration --inventory "$inventory" --color no "$@"
