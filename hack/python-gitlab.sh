#!/usr/bin/env bash
# Installs the pinned python-gitlab (hack/python-gitlab.txt) into <repo>/.tools/venv, only when
# missing or when the pins changed, and prints the venv's python. Idempotent and quiet.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$repo/.tools/venv"
pins="$repo/hack/python-gitlab.txt"
stamp="$venv/.pins"
if [ ! -x "$venv/bin/python" ] || ! cmp -s "$pins" "$stamp"; then
  python3 -m venv "$venv" >&2
  "$venv/bin/pip" install --quiet --disable-pip-version-check --no-input -r "$pins" >&2
  cp "$pins" "$stamp"
fi
echo "$venv/bin/python"
