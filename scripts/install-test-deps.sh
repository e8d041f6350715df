#!/usr/bin/env bash
# System packages the test suite needs (Debian). Safe to run again; does nothing when present.
set -euo pipefail
