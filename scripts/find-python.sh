#!/usr/bin/env bash
# Print a working interpreter for Python X.Y ($1, e.g. 3.13), or exit 1 if there is none.
# `pythonX.Y` on PATH is taken only if it runs: a pyenv shim for a version that is installed
# but not enabled exists on PATH and fails. Then pyenv's own install folder is tried.
#   usage: make test PYTHON="$(bash scripts/find-python.sh 3.13)"
set -euo pipefail
version="${1:?usage: find-python.sh X.Y}"
candidates=("python$version")
root="$(pyenv root 2>/dev/null || echo "$HOME/.pyenv")"
for dir in "$root"/versions/"$version".*/bin; do candidates+=("$dir/python$version"); done
for py in "${candidates[@]}"; do
  if "$py" -c 'import sys, venv; sys.exit(sys.version_info[:2] != tuple(map(int, sys.argv[1].split("."))))' \
      "$version" >/dev/null 2>&1; then
    command -v "$py"
    exit 0
  fi
done
echo "no working python$version found (on PATH or under $root/versions)" >&2
exit 1
