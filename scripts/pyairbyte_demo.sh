#!/usr/bin/env bash
# Runs the connector from Python with PyAirbyte (source-faker -> Heap sandbox), each in a venv of its own:
# PyAirbyte with this connector in .venv-pyairbyte, source-faker (which pins an older CDK) in .venv-faker.
# Offline: PyAirbyte's registry is not consulted; both connectors are given as local executables. Both pinned, so
# a new release of either is taken on purpose.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
PYTHON="${PYTHON:-python3}"
if [ ! -x .venv-faker/bin/source-faker ]; then
  "$PYTHON" -m venv .venv-faker
  .venv-faker/bin/python -m pip install --quiet airbyte-source-faker==7.2.1
fi
if [ ! -x .venv-pyairbyte/bin/destination-heap-analytics ] || ! .venv-pyairbyte/bin/python -c "import airbyte" 2>/dev/null; then
  "$PYTHON" -m venv .venv-pyairbyte
  .venv-pyairbyte/bin/python -m pip install --quiet --upgrade pip
  .venv-pyairbyte/bin/python -m pip install --quiet airbyte==0.69.0 -e .
fi
export AIRBYTE_OFFLINE_MODE=1
export PATH="$ROOT/.venv-faker/bin:$PATH"  # source-faker, as the guide names it
export PATH="$ROOT/.venv-pyairbyte/bin:$PATH"
exec python -m integration_tests.pyairbyte_demo
