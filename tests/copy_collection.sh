#!/usr/bin/env bash
# Copies the files git would ship into DEST/ansible_collections/mailops/iis_smtp/.
#
# ansible-test only works on a collection at ansible_collections/<ns>/<name>/
# and resolves the real working directory, so a symlink would not do. The
# copy is refreshed in place: only ansible-test's scratch folder
# (tests/output/) survives, so its virtualenvs and caches are kept between runs.
#
# Usage: tests/copy_collection.sh DEST   (prints the collection directory)
set -euo pipefail

repo="$(cd "$(dirname "$0")/.." && pwd)"
collection="${1:?usage: $0 DEST}/ansible_collections/mailops/iis_smtp"
mkdir -p "$collection"
find "$collection" -mindepth 1 -maxdepth 1 ! -name tests -exec rm -rf {} +
if [[ -d "$collection/tests" ]]; then
    find "$collection/tests" -mindepth 1 -maxdepth 1 ! -name output -exec rm -rf {} +
fi
(cd "$repo" && git ls-files -z --cached --others --exclude-standard \
    | while IFS= read -r -d '' f; do [[ -e "$f" ]] && printf '%s\0' "$f"; done \
    | tar --null -T - -cf -) | tar -xf - -C "$collection"
printf '%s\n' "$collection"
