#!/usr/bin/env bash
# Runs the unit tests on Python 3.10, the oldest Python the package supports (PyAirbyte users often have it), in a
# venv of its own (.venv-py310). The image, the demo and the integration tests run on 3.11. Takes a python3.10 that
# runs (on PATH, or one pyenv has installed); where there is none, says so and fails, unless ALLOW_NO_PY310=1.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
PY310=""
for candidate in "$(command -v python3.10 || true)" "${PYENV_ROOT:-$HOME/.pyenv}"/versions/3.10*/bin/python3.10; do
  if [ -n "$candidate" ] && [ -x "$candidate" ] && "$candidate" -c 'import sys; assert sys.version_info[:2] == (3, 10)' 2>/dev/null; then
    PY310="$candidate"
    break
  fi
done
if [ -z "$PY310" ]; then
  echo "test_py310: no Python 3.10 on this machine; the unit tests did not run on 3.10" >&2
  [ "${ALLOW_NO_PY310:-}" = "1" ] && exit 0
  exit 1
fi
STAMP=".venv-py310/.installed-$(sha1sum setup.py | cut -c1-12)"
if [ ! -f "$STAMP" ]; then
  "$PY310" -m venv .venv-py310
  .venv-py310/bin/python -m pip install --quiet --upgrade pip
  .venv-py310/bin/python -m pip install --quiet -e ".[tests]"
  touch "$STAMP"
fi
exec .venv-py310/bin/python -m pytest -n 4 -p no:cacheprovider unit_tests "$@"
