#!/usr/bin/env bash
# Debian packages the test suite needs beyond Python: JDK 17, JUnit 5 and Gson for the
# Android demo's Java core (make jvm-test), Chromium for the report page's browser test
# (tests/test_report.py). Idempotent: installs only what is missing. Run as root, or with sudo.
# `make test` and `.ci/run` both call it.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive

need=()
command -v javac >/dev/null 2>&1 || need+=(openjdk-17-jdk-headless)
[ -f /usr/share/java/junit-platform-console-standalone.jar ] || need+=(junit5)
[ -f /usr/share/java/gson.jar ] || need+=(libgoogle-gson-java)
command -v chromium >/dev/null 2>&1 || need+=(chromium)
if [ ${#need[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -q
  $sudo apt-get install -y -q --no-install-recommends "${need[@]}"
fi
