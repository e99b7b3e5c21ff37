"""Runs `main.py write` on the bundled sample data against the local Heap sandbox and shows what Heap received.

Usage: python -m integration_tests.demo [track|user_properties|account_properties|mappings|all]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from integration_tests.heap_sandbox import ENDPOINTS, HeapSandbox
from integration_tests.support import run_connector

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "sample_files"
APIS = ("track", "user_properties", "account_properties", "mappings")


def run_sample(api: str, sandbox: HeapSandbox) -> int:
    """Writes the sample stream with one sample config; prints the connector's messages and Heap's items."""
    config = json.loads((SAMPLES / f"config_{api}.json").read_text())
    config["base_url"] = sandbox.url
    catalog = json.loads((SAMPLES / "configured_catalog.json").read_text())
    lines = (SAMPLES / "messages.jsonl").read_bytes().splitlines()
    run = run_connector("write", config, lines, catalog_json=catalog)
    print(f"=== {api}: main.py write exited {run.returncode}; what the connector said:")
    for message in run.messages:
        if message["type"] == "LOG":
            print(f"  LOG   {message['log']['message']}")
        elif message["type"] == "STATE":
            print(f"  STATE {json.dumps(message['state'])}")
        elif message["type"] == "TRACE":
            print(f"  TRACE {json.dumps(message['trace'].get('analytics') or message['trace'].get('error'))}")
    if run.stderr:
        print(run.stderr, file=sys.stderr)
    for api_type in api_types(config):
        field = ENDPOINTS[f"/api/{api_type}"]
        items = sandbox.items(field)
        print(f"=== What Heap received at /api/{api_type} ({len(items)} {field}):")
        for item in items:
            print("  " + json.dumps(item))
    return run.returncode


def api_types(config: dict) -> list[str]:
    """The API types a config loads into, in order: its api's, or each mapping's."""
    apis = [config["api"]] if "api" in config else [mapping["api"] for mapping in config["mappings"]]
    return list(dict.fromkeys(api["api_type"] for api in apis))


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
