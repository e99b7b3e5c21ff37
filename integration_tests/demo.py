"""Runs `main.py write` on the bundled sample data against the local Heap sandbox and shows what Heap received.

Usage: python -m integration_tests.demo [track|user_properties|account_properties|all]
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

from integration_tests.heap_sandbox import ENDPOINTS, HeapSandbox

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "sample_files"
APIS = ("track", "user_properties", "account_properties")


def run_sample(api: str, sandbox: HeapSandbox) -> int:
    """Writes the sample stream with one sample config; prints the connector's messages and Heap's items."""
    config = json.loads((SAMPLES / f"config_{api}.json").read_text())
    config["base_url"] = sandbox.url
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as config_file:
        json.dump(config, config_file)
    with open(SAMPLES / "messages.jsonl", "rb") as messages:
        process = subprocess.run(
            [
                sys.executable,
                str(ROOT / "main.py"),
                "write",
                "--config",
                config_file.name,
                "--catalog",
                str(SAMPLES / "configured_catalog.json"),
            ],
            stdin=messages,
            capture_output=True,
            check=False,
        )
    Path(config_file.name).unlink()
    print(f"=== {api}: main.py write exited {process.returncode}; what the connector said:")
    for line in process.stdout.decode().splitlines():
        message = json.loads(line)
        if message["type"] == "LOG":
            print(f"  LOG   {message['log']['message']}")
        elif message["type"] == "STATE":
            print(f"  STATE {json.dumps(message['state'])}")
        elif message["type"] == "TRACE":
            print(f"  TRACE {json.dumps(message['trace'].get('analytics') or message['trace'].get('error'))}")
    if process.stderr:
        print(process.stderr.decode(), file=sys.stderr)
    field = ENDPOINTS[sandbox_endpoint(config["api"]["api_type"])]
    items = sandbox.items(field)
    print(f"=== What Heap received at /api/{config['api']['api_type']} ({len(items)} {field}):")
    for item in items:
        print("  " + json.dumps(item))
    return process.returncode


def sandbox_endpoint(api_type: str) -> str:
    """The sandbox path of an api_type."""
    return f"/api/{api_type}"


def main() -> None:
    """Runs the chosen sample configs, one sandbox each."""
    chosen = sys.argv[1] if len(sys.argv) > 1 else "track"
    apis = APIS if chosen == "all" else (chosen,)
    if not set(apis) <= set(APIS):
        sys.exit(f"usage: python -m integration_tests.demo [{'|'.join(APIS)}|all]")
    failures = 0
    for api in apis:
        with HeapSandbox() as sandbox:
            failures += run_sample(api, sandbox) != 0
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
