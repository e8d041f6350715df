#!/usr/bin/env bash
# System packages the test suite needs (Debian). Safe to run again; does nothing when present.
# The browser tests drive Debian's chromium through the Python playwright package (no `playwright install`).
set -euo pipefail

# The fleet tests start real NATS JetStream servers: Debian's nats-server (2.9).
missing=()
command -v chromium >/dev/null 2>&1 || missing+=(chromium fonts-dejavu-core)
command -v nats-server >/dev/null 2>&1 || [ -x /usr/sbin/nats-server ] || missing+=(nats-server)
if [ ${#missing[@]} -eq 0 ]; then
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "install-test-deps: ${missing[*]} missing and this is not root; run: sudo apt-get install -y ${missing[*]}" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q --no-install-recommends "${missing[@]}"
# The Debian package enables a system service; the tests start their own servers on free ports.
if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
    systemctl disable --now nats-server >/dev/null 2>&1 || true
fi
