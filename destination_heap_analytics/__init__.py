"""An Airbyte destination that loads records into Heap Analytics through its server-side APIs."""

from __future__ import annotations

import json
import sys
from pathlib import Path

SPEC = Path(__file__).with_name("spec.json")


def run() -> None:
    """The console script's entry point: `spec` is answered from the bundled JSON, without importing the CDK
    (most of a command's start-up), every other command by the CDK's destination."""
    if sys.argv[1:] == ["spec"]:
        sys.stdout.write(spec_line() + "\n")
        return
    try:
        from .destination import run as run_command
    except ModuleNotFoundError as missing:  # a Python the connector was not installed into
        sys.exit(f"{missing.name} is not installed for {sys.executable}: run scripts/demo.sh, then .venv/bin/python")
    run_command()


def spec_line() -> str:
    """The SPEC message, as one line."""
    return json.dumps({"type": "SPEC", "spec": json.loads(SPEC.read_text())}, separators=(",", ":"))
