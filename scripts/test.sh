#!/usr/bin/env bash
# Lints, then runs every unit and integration test (the integration tests start their own sandbox), four at a
# time (most wait on sockets and clocks), each `main.py` run forked from a process that has imported it.
# --slow: each `main.py` run a fresh `python main.py` instead (what the platform and PyAirbyte start), as CI
# runs it too. Other arguments go to pytest.
source "$(dirname "$0")/venv.sh"
ruff check .
ruff format --check .
hadolint --failure-threshold warning Dockerfile
if [ "${1:-}" = "--slow" ]; then
  shift
  export HEAP_TESTS_SPAWN=1
fi
exec python -m pytest -n 4 "$@"
