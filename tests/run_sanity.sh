#!/usr/bin/env bash
# Static checks of the whole collection, offline:
#   ansible-test  `ansible-test sanity` on every file git would ship
#   ruff          lint of all Python (config: pyproject.toml)
#   mypy          types of all Python (config: pyproject.toml)
#   ansible-lint  the role and the playbooks, profile production (.ansible-lint)
#
# Usage: tests/run_sanity.sh [all|ansible-test|ruff|mypy|ansible-lint] [ansible-test args...]
#
# ansible-test only works on a collection at ansible_collections/<ns>/<name>/,
# and `--venv` would download get-pip from the internet. So this script keeps a
# virtualenv (.venv-sanity, pinned in tests/sanity/requirements.txt) to run
# ansible-test from, copies the files git would ship into
# <tmp>/ansible_collections/mailops/iis_smtp/ (a copy: ansible-test resolves the
# real working directory, so a symlink would not do), and runs it there. The
# copy stays in a fixed temporary folder so ansible-test's per-test virtualenvs
# and caches survive between runs.
#
# Environment: PYTHON (base interpreter for .venv-sanity, default python3),
#   VENV (project virtualenv with ruff, mypy, ansible-lint; default .venv),
#   SANITY_VENV (default .venv-sanity), SANITY_TREE (where the copy lives).
set -euo pipefail

repo="$(cd "$(dirname "$0")/.." && pwd)"
check="${1:-all}"
[[ $# -gt 0 ]] && shift
python="${PYTHON:-python3}"
venv="${VENV:-$repo/.venv}"
sanity_venv="${SANITY_VENV:-$repo/.venv-sanity}"
tree_root="${SANITY_TREE:-${TMPDIR:-/tmp}/mailops-iis_smtp-sanity-$(printf '%s' "$repo" | cksum | cut -d' ' -f1)}"

# One run at a time per checkout: two runs would rebuild the shared copy and
# ansible-test's virtualenvs under each other.
mkdir -p "$tree_root"
exec 9>"$tree_root/.lock"
flock 9

pip_quiet() {
    # pip names every extra index location it skips; keep its real messages.
    # (pipefail makes a failing pip fail the pipeline.)
    "$@" 2>&1 | { grep -v 'is neither a file nor a directory' || true; } >&2
}

ensure_sanity_venv() {
    local requirements="$repo/tests/sanity/requirements.txt" stamp want
    stamp="$sanity_venv/.requirements.sha256"
    want="$(sha256sum "$requirements" | cut -d' ' -f1)"
    if [[ -x "$sanity_venv/bin/ansible-test" && "$(cat "$stamp" 2>/dev/null)" == "$want" ]]; then
        return 0
    fi
    echo "sanity: building $sanity_venv" >&2
    rm -rf "$sanity_venv"
    "$python" -m venv "$sanity_venv"
    pip_quiet "$sanity_venv/bin/pip" install --quiet --disable-pip-version-check -r "$requirements"
    echo "$want" > "$stamp"
}

copy_tree() {
    # A fresh copy of the sources; only ansible-test's scratch folder is kept.
    "$repo/tests/copy_collection.sh" "$tree_root" >/dev/null
}

link_tree() {
    # mypy and ansible-lint read the working tree itself, through a symlink
    # that gives it its collection name (as tests/conftest.py does).
    local root="$tree_root/link"
    mkdir -p "$root/ansible_collections/mailops"
    ln -sfn "$repo" "$root/ansible_collections/mailops/iis_smtp"
    printf '%s' "$root"
}

run_ansible_test() {
    ensure_sanity_venv
    copy_tree
    # ansible-test gives each sanity test its own virtualenv and puts pip into
    # it with get-pip.py, which it would download. Its cache slot gets a
    # stand-in that bootstraps pip with the interpreter's own ensurepip, then
    # installs the requested pip from the configured package index. A private
    # HOME keeps the stand-in and those virtualenvs out of the user's
    # ~/.ansible; the user's pip configuration is carried over.
    local home="$tree_root/home" conf pip_version py_version
    mkdir -p "$home/.ansible/test/cache"
    for conf in .config/pip .pip; do
        if [[ -d "${HOME:-/nonexistent}/$conf" && ! -e "$home/$conf" ]]; then
            mkdir -p "$(dirname "$home/$conf")"
            cp -r "$HOME/$conf" "$home/$conf"
        fi
    done
    py_version="$("$sanity_venv/bin/python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
    pip_version="$("$sanity_venv/bin/python" - "$py_version" <<'PY'
import sys
from ansible_test._internal.host_configs import NativePythonConfig
from ansible_test._internal.python_requirements import get_venv_packages
print(get_venv_packages(NativePythonConfig(version=sys.argv[1]))["pip"])
PY
)"
    cat > "$home/.ansible/test/cache/get_pip_${pip_version//./_}.py" <<'PY'
"""Offline stand-in for get-pip.py: ensurepip, then install what was asked."""
import subprocess
import sys

GET_PIP_ONLY = {"--no-setuptools", "--no-wheel", "--no-pip"}
subprocess.run([sys.executable, "-m", "ensurepip", "--default-pip"], check=True, stdout=subprocess.DEVNULL)
args = [a for a in sys.argv[1:] if a not in GET_PIP_ONLY]
sys.exit(subprocess.run([sys.executable, "-m", "pip", "install", "--quiet"] + args, check=False).returncode)
PY
    (cd "$tree_root/ansible_collections/mailops/iis_smtp" \
        && HOME="$home" PATH="$sanity_venv/bin:$PATH" \
           "$sanity_venv/bin/ansible-test" sanity --python "$py_version" --color no "$@")
}

run_ruff() {
    (cd "$repo" && "$venv/bin/ruff" check --no-cache --output-format concise .)
}

run_mypy() {
    local root status=0
    root="$(link_tree)"
    # Plugins are checked under their collection name, as Ansible imports them;
    # the tests (package `tests`) from the repository root. Paths are printed
    # relative to the repository either way.
    (cd "$root" && MYPYPATH="$root" "$venv/bin/mypy" --config-file "$repo/pyproject.toml" \
        --cache-dir "$tree_root/mypy-cache" ansible_collections/mailops/iis_smtp/plugins) \
        | sed 's#^ansible_collections/mailops/iis_smtp/##' || status=1
    (cd "$repo" && MYPYPATH="$root" "$venv/bin/mypy" --config-file pyproject.toml \
        --cache-dir "$tree_root/mypy-cache-tests" tests) || status=1
    return "$status"
}

run_ansible_lint() {
    local root
    root="$(link_tree)"
    (cd "$repo" && ANSIBLE_COLLECTIONS_PATH="$root" ANSIBLE_HOME="$tree_root/ansible-lint-home" \
        PATH="$venv/bin:$PATH" "$venv/bin/ansible-lint" --nocolor roles playbooks)
}

case "$check" in
    ansible-test) run_ansible_test "$@" ;;
    ruff) run_ruff ;;
    mypy) run_mypy ;;
    ansible-lint) run_ansible_lint ;;
    all)
        failed=()
        for c in ansible-test ruff mypy ansible-lint; do
            echo "=== $c" >&2
            "run_${c//-/_}" "$@" || failed+=("$c")
        done
        if [[ ${#failed[@]} -gt 0 ]]; then
            echo "FAILED: ${failed[*]}" >&2
            exit 1
        fi
        echo "sanity: ansible-test, ruff, mypy and ansible-lint passed" >&2
        ;;
    *) echo "usage: $0 [all|ansible-test|ruff|mypy|ansible-lint] [ansible-test args...]" >&2; exit 2 ;;
esac
