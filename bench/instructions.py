"""Counts instructions per record on the nested shape, under valgrind: the floor against the connector's
reading, mapping, batching and sync (a dry run, in process, on one thread).

Usage: python bench/instructions.py [--records 5000]

CPU time on a shared VM moves by a third within minutes, so bench/run.py needs rounds and medians to
rank two versions; an instruction count does not move (the hash seed is fixed), so it ranks a change
of a few percent in one run. It leaves out what bench/run.py counts besides: the sender threads (HTTP,
pacing), the kernel's work and the cost of cache misses. Start-up is left out by counting only inside
`sys.call_tracing`, which nothing else calls. Needs valgrind on the PATH; takes a few minutes.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import logging
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.run import CATALOG, NESTED_APIS, generate, nested_floor_loop  # noqa: E402

COLLECTED = re.compile(r"Collected : (\d+)")


def connector(path: Path, api_type: str) -> None:
    """The connector's main thread on every line of the file: a dry run, so nothing is sent."""
    from airbyte_cdk.models import ConfiguredAirbyteCatalogSerializer

    from destination_heap_analytics.config import HeapConfig
    from destination_heap_analytics.messages import LineReader, polled_lines
    from destination_heap_analytics.rejected import NoStore
    from destination_heap_analytics.routing import routes
    from destination_heap_analytics.sync import Sync

    config = HeapConfig.parse({"app_id": "11", "api": NESTED_APIS[api_type], "dry_run": True, "dry_run_payloads": 0})
    catalog = ConfiguredAirbyteCatalogSerializer.load(CATALOG)
    sync = Sync(config, routes(config, catalog), NoStore())
    with path.open("rb") as stream:
        sys.call_tracing(lambda: list(sync.run(polled_lines(stream, LineReader(), 1.0))), ())


def floor(path: Path, api_type: str) -> None:
    """The loop of bench/run.py's nested floor on the file."""
    sys.call_tracing(nested_floor_loop, (path, api_type))


def counted(side: str, api_type: str, path: Path, records: int) -> float:
    """Instructions per record of one side, counted in a process of its own under callgrind."""
    command = ["valgrind", "--tool=callgrind", "--collect-atstart=no", "--toggle-collect=sys_call_tracing"]
    command += ["--callgrind-out-file=/dev/null", sys.executable, __file__, "--inner", side, api_type, str(path)]
    done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "PYTHONHASHSEED": "0"})
    found = COLLECTED.search(done.stderr)
    if done.returncode != 0 or found is None:
        raise SystemExit(f"{side} {api_type} failed under valgrind: {done.stderr[-2000:]}")
    return int(found.group(1)) / records


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=5_000)
    parser.add_argument("--inner", nargs=3, metavar=("SIDE", "API", "FILE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.inner:
        logging.disable(logging.CRITICAL)
        side, api_type, path = args.inner
        {"floor": floor, "connector": connector}[side](Path(path), api_type)
        return
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "nested.jsonl"
        generate(path, args.records, distinct=True)
        jobs = [(side, api_type) for api_type in NESTED_APIS for side in ("floor", "connector")]
        with concurrent.futures.ThreadPoolExecutor(os.cpu_count()) as pool:
            counts = dict(zip(jobs, pool.map(lambda job: counted(*job, path, args.records), jobs), strict=True))
    for api_type in NESTED_APIS:
        floor_count, connector_count = counts["floor", api_type], counts["connector", api_type]
        print(
            f"{api_type}: floor {floor_count:,.0f}, connector {connector_count:,.0f} instructions a record "
            f"({connector_count / floor_count:.2f}x)"
        )


if __name__ == "__main__":
    main()
