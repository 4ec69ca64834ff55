#!/usr/bin/env bash
# Debian packages `make` needs to create the venv and build the package: the Python given as
# $1 (default python3.11) with venv support, and a C compiler with that Python's headers for
# the fused synthesis kernel (without them the package still installs and runs its NumPy
# fallback, with the same bytes). Idempotent. `make demo`, `make test` and `.ci/run` call it.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
py="${1:-python3.11}"

need=()
command -v "$py" >/dev/null 2>&1 || need+=("$py" "$py-venv")
if command -v "$py" >/dev/null 2>&1; then
  "$py" -m venv --help >/dev/null 2>&1 || need+=("$py-venv")
  "$py" -c 'import os, sys, sysconfig; sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))' \
    || need+=("$py-dev")
else
  need+=("$py-dev")
fi
command -v gcc >/dev/null 2>&1 || need+=(gcc)
if [ ${#need[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -q
  $sudo apt-get install -y -q --no-install-recommends "${need[@]}"
fi
