#!/usr/bin/env bash
# The second leg of the ansible-core test matrix: the newest ansible-core.
#
# The main virtualenv (.venv, tests/requirements.txt) runs everything on the
# oldest supported ansible-core (2.19, Python 3.11). This script keeps
# .venv-core-latest (tests/requirements-core-latest.txt; ansible-core 2.20 and
# later need Python >= 3.12) and runs there the unit tests, the end-to-end
# core tests, and the installed-tarball smoke.
#
# Usage: tests/matrix.sh [extra pytest arguments]
# Environment: PYTHON_LATEST (interpreter for the venv; default: the newest
#   python3.13/python3.12 found, pyenv's first), LATEST_VENV (default .venv-core-latest).
set -euo pipefail

repo="$(cd "$(dirname "$0")/.." && pwd)"
venv="${LATEST_VENV:-$repo/.venv-core-latest}"
requirements="$repo/tests/requirements-core-latest.txt"

find_python() {
    local candidate version
    if [[ -n "${PYTHON_LATEST:-}" ]]; then
        printf '%s' "$PYTHON_LATEST"
        return 0
    fi
    for version in 3.13 3.12; do
        candidate=""
        if command -v pyenv >/dev/null 2>&1; then
            candidate="$(pyenv which "python$version" 2>/dev/null || true)"
            if [[ -z "$candidate" ]]; then
                candidate="$(find "$(pyenv root)/versions" -maxdepth 3 -path "*/bin/python$version" 2>/dev/null | sort -V | tail -n 1)"
            fi
        fi
        if [[ -z "$candidate" ]]; then
            candidate="$(command -v "python$version" || true)"
        fi
        if [[ -n "$candidate" ]] && "$candidate" -c 'import sys; assert sys.version_info >= (3, 12)' 2>/dev/null; then
            printf '%s' "$candidate"
            return 0
        fi
    done
    echo "matrix: no Python >= 3.12 found (set PYTHON_LATEST)" >&2
    return 1
}

# Two runs at once must not build the virtualenv under each other.
exec 9>"${TMPDIR:-/tmp}/mailops-iis_smtp-matrix-$(printf '%s' "$venv" | cksum | cut -d' ' -f1).lock"
flock 9
stamp="$venv/.requirements.sha256"
want="$(sha256sum "$requirements" | cut -d' ' -f1)"
if [[ ! -x "$venv/bin/python" || "$(cat "$stamp" 2>/dev/null)" != "$want" ]]; then
    python="$(find_python)"
    echo "matrix: building $venv with $python" >&2
    rm -rf "$venv"
    "$python" -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$requirements" 2>&1 \
        | { grep -v 'is neither a file nor a directory' || true; } >&2
    echo "$want" > "$stamp"
fi

flock -u 9

cd "$repo"
"$venv/bin/python" -c "import sys, ansible.release as r; print(\"ansible-core\", r.__version__, \"on Python\", sys.version.split()[0])"
# Coverage is measured in the main run; here only pass/fail matters.
exec "$venv/bin/python" -m pytest -p no:cacheprovider --no-cov \
    tests/unit tests/e2e/test_core.py \
    tests/ecosystem/test_galaxy.py tests/ecosystem/test_runtime_meta.py "$@"
