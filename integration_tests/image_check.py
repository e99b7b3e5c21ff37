"""Runs the built image as the Airbyte platform does: spec, check, discover and write, with the platform's STATE ids.

Usage: python -m integration_tests.image_check IMAGE [podman global options...]
Every `write` runs with a read-only root filesystem, one of them as `--user 1000` named explicitly; the
config and catalog are mounted read-only, as the platform mounts them; a last pair of writes keeps a
change-detection snapshot on a mounted volume. Exits non-zero at the first
difference from what the platform expects.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from integration_tests.demo import APIS, api_types
from integration_tests.heap_sandbox import ENDPOINTS, HeapSandbox

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "sample_files"
RUN = ["run", "--rm", "-i", "--runtime", "runc", "--network", "host", "--read-only"]
LIMITS = ["--ulimit", "nofile=8192:8192", "--ulimit", "nproc=8192:8192"]


def container(
    podman: list[str],
    image: str,
    args: list[str],
    mounts: Path,
    stdin: bytes = b"",
    user: bool = False,
    volume: Path | None = None,
):
    """Runs the image with the connector's arguments (and `volume` mounted writable at /volume); returns its
    output messages."""
    command = [*podman, *RUN, *LIMITS, "-v", f"{mounts}:/config:ro"]
    if volume is not None:
        command += ["-v", f"{volume}:/volume"]
    if user:
        command += ["--user", "1000"]
    process = subprocess.run([*command, image, *args], input=stdin, capture_output=True, check=False, timeout=300)
    messages = [json.loads(line) for line in process.stdout.splitlines() if line.strip()]
    if process.returncode != 0:
        sys.exit(f"{' '.join(args[:1])} exited {process.returncode}: {process.stderr.decode()[-2000:]}")
    return messages


def with_platform_ids(lines: list[bytes]) -> tuple[bytes, list[dict[str, Any]]]:
    """The sample messages with an `id` in every STATE, as the platform sends them; and those STATEs."""
    out, states = [], []
    for line in lines:
        message = json.loads(line)
        if message["type"] == "STATE":
            message["state"]["id"] = 100 + len(states)
            states.append(message)
        out.append(json.dumps(message).encode())
    return b"\n".join(out) + b"\n", states


def main() -> None:
    """Checks spec, check and every sample config's write inside the image."""
    image, podman = sys.argv[1], ["podman", *sys.argv[2:]]
    lines = (SAMPLES / "messages.jsonl").read_bytes().splitlines()
    stdin, sent_states = with_platform_ids(lines)
    records = sum(json.loads(line)["type"] == "RECORD" for line in lines)
    with tempfile.TemporaryDirectory() as tmp:
        mounts = Path(tmp)
        mounts.chmod(0o755)
        (mounts / "catalog.json").write_bytes((SAMPLES / "configured_catalog.json").read_bytes())
        spec = container(podman, image, ["spec"], mounts)
        assert spec[0]["type"] == "SPEC", spec
        print("spec: ok")
        for number, name in enumerate(APIS):
            with HeapSandbox() as sandbox:
                config = json.loads((SAMPLES / f"config_{name}.json").read_text())
                config["base_url"] = sandbox.url
                (mounts / "config.json").write_text(json.dumps(config))
                for path in mounts.iterdir():
                    path.chmod(0o644)
                if number == 0:
                    status = container(podman, image, ["check", "--config", "/config/config.json"], mounts)
                    assert status[-1]["connectionStatus"]["status"] == "SUCCEEDED", status
                    print("check: ok")
                    catalog = container(podman, image, ["discover", "--config", "/config/config.json"], mounts)
                    operations = catalog[-1]["destination_catalog"]["operations"]
                    assert {op["object_name"] for op in operations} >= {"event", "user_properties"}, catalog
                    print(f"discover: {len(operations)} Heap objects")
                args = ["write", "--config", "/config/config.json", "--catalog", "/config/catalog.json"]
                out = container(podman, image, args, mounts, stdin, user=number == 0)
                fields = [ENDPOINTS[f"/api/{api_type}"] for api_type in api_types(config)]
                received = [item for field in fields for item in sandbox.items(field)]
                routes = len(config.get("mappings", [config.get("api")]))
                back = [m for m in out if m["type"] == "STATE"]
                assert [m["state"]["id"] for m in back] == [m["state"]["id"] for m in sent_states], back
                for came, went in zip(sent_states, back, strict=True):
                    assert {**went["state"], "destinationStats": None} == {**came["state"], "destinationStats": None}
                assert sum(m["state"]["destinationStats"]["recordCount"] for m in back) == records
                summary = [m for m in out if m["type"] == "TRACE" and m["trace"]["type"] == "ANALYTICS"][-1]
                totals = json.loads(summary["trace"]["analytics"]["value"])
                assert totals["records_delivered"] == records, "each record counted once, as its STATE counts it"
                accepted = sum(mapping["records_accepted"] for mapping in totals["mappings"])
                assert accepted == records * routes, "each record accepted once through each mapping"
                assert len(received) == records * routes, f"Heap received {len(received)} items"
                who = "as --user 1000, " if number == 0 else ""
                print(
                    f"write {name} ({who}read-only): {len(received)} {', '.join(fields)} received, STATE ids in order"
                )
        resync_sends_nothing(podman, image, mounts, stdin, records)


def resync_sends_nothing(podman: list[str], image: str, mounts: Path, stdin: bytes, records: int) -> None:
    """Two writes as --user 1000 with a local change-detection snapshot on a mounted volume, as `docker run -v`
    gives one: the second sends nothing and still counts every record delivered."""
    with HeapSandbox() as sandbox, tempfile.TemporaryDirectory() as volume:
        Path(volume).chmod(0o777)
        config = json.loads((SAMPLES / "config_track.json").read_text())
        config.update(base_url=sandbox.url, change_detection={"store": "local", "path": "/volume/snapshot"})
        (mounts / "config.json").write_text(json.dumps(config))
        (mounts / "config.json").chmod(0o644)
        args = ["write", "--config", "/config/config.json", "--catalog", "/config/catalog.json"]
        for sync in ("first", "second"):
            out = container(podman, image, args, mounts, stdin, user=True, volume=Path(volume))
            states = [m["state"] for m in out if m["type"] == "STATE"]
            assert sum(state["destinationStats"]["recordCount"] for state in states) == records, sync
            assert len(sandbox.items("events")) == records, f"{sync} sync: Heap has {len(sandbox.items('events'))}"
        print(f"write track with a local snapshot on a volume (--user 1000, read-only), twice: {records} events once")


if __name__ == "__main__":
    main()
