#!/usr/bin/env bash
# System packages the test suite needs (Debian). Safe to run again; does nothing when present.
# The browser tests drive Debian's chromium through the Python playwright package (no `playwright install`).
set -euo pipefail

if command -v chromium >/dev/null 2>&1; then
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "install-test-deps: chromium is missing and this is not root; run: sudo apt-get install -y chromium" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q --no-install-recommends chromium fonts-dejavu-core
