#!/usr/bin/env bash
# Test dependencies outside Python: Debian's chromium, for the report's headless-browser test
# (tests/test_report.py). Idempotent: installs only what is missing. Run as root, or with sudo.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive

need=()
command -v chromium >/dev/null 2>&1 || need+=(chromium)
if [ ${#need[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -q
  $sudo apt-get install -y -q --no-install-recommends "${need[@]}"
fi
chromium --version
