#!/usr/bin/env bash
# Loads sample_files/ into a local Heap sandbox with `main.py write` and prints what Heap received.
# Usage: scripts/demo.sh [track|user_properties|account_properties|mappings|all]
source "$(dirname "$0")/venv.sh"
exec python -m integration_tests.demo "${1:-track}"
