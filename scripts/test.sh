#!/usr/bin/env bash
# Lints, then runs every unit and integration test (the integration tests start their own sandbox).
source "$(dirname "$0")/venv.sh"
ruff check .
ruff format --check .
hadolint --failure-threshold warning Dockerfile
exec python -m pytest "$@"
