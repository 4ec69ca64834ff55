#!/usr/bin/env bash
# System packages `make test` and `make demo` need, installed once (idempotent; a no-op when
# everything is there). Called by the Makefile and by .ci/run, so a fresh machine and CI get
# the same set. To add a package: one line in PACKAGES, "<check> <apt package>".
#   usage: scripts/install-test-deps.sh [--python-only] [python3.11 ...]
#   (--python-only: just Python with venv support, for make demo)
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive

# check command (true when present)                                   apt package
PACKAGES=(
  "command -v javac"                                                    openjdk-17-jdk-headless
  "test -f /usr/share/java/junit-platform-console-standalone.jar"       junit5
  "test -f /usr/share/java/gson.jar"                                    libgoogle-gson-java
  "command -v chromium"                                                 chromium
  "ldconfig -p | grep -q libvulkan.so.1"                                libvulkan1
)

python_only=0
if [ "${1:-}" = "--python-only" ]; then python_only=1; shift; fi

need=()
for ((i = 0; i < ${#PACKAGES[@]} * (1 - python_only); i += 2)); do
  bash -c "${PACKAGES[i]}" >/dev/null 2>&1 || need+=("${PACKAGES[i + 1]}")
done
for py in "${@:-python3.11}"; do
  "$py" -c 'import ensurepip, venv' >/dev/null 2>&1 && continue
  if apt-cache show "$py-venv" >/dev/null 2>&1; then
    need+=("$py" "$py-venv")
  else
    echo "warning: $py with venv support not found and not in apt; install it (e.g. pyenv)" >&2
  fi
done
[ ${#need[@]} -eq 0 ] && exit 0

echo "installing: ${need[*]}" >&2
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
