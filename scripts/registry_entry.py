"""Writes a connector registry that gives self-hosted Airbyte this image with Data Activation.

Airbyte reads a connector's capabilities (`supportsDataActivation`, `supportsRefreshes`, `allowedHosts`) from its
connector registry, never from the image: a connector added by image gets none of them, and the platform refuses its
`discover`. Self-hosted Airbyte reads its registry from `CONNECTOR_REGISTRY_BASE_URL`; this writes the two files the
platform asks that address for, built from `metadata.yaml` and `spec.json`:

    OUT/registries/v0/oss_registry.json                          every connector the instance offers
    OUT/metadata/<dockerRepository>/<dockerImageTag>/oss.json    this version's entry alone

    python scripts/registry_entry.py OUT [--repository REPO] [--merge oss_registry.json]

--repository names the image as your Airbyte pulls it (your registry's copy); --merge adds the entry to a registry
you already serve or Airbyte's own (https://connectors.airbyte.com/files/registries/v0/oss_registry.json), replacing
any earlier entry of this connector, so the instance keeps every other connector. docs/heap-analytics.md, "Data
Activation on self-hosted Airbyte", walks through it.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent


def registry_entry(repository: str | None = None) -> dict[str, Any]:
    """This connector's destination definition, in the shape the platform's registry converters read."""
    metadata = yaml.safe_load((ROOT / "metadata.yaml").read_text())["data"]
    if not metadata["registryOverrides"]["oss"]["enabled"]:
        raise SystemExit("metadata.yaml does not enable the oss registry")
    languages = [tag.split(":", 1)[1] for tag in metadata["tags"] if tag.startswith("language:")]
    return {
        "destinationDefinitionId": metadata["definitionId"],
        "name": metadata["name"],
        "dockerRepository": repository or metadata["dockerRepository"],
        "dockerImageTag": metadata["dockerImageTag"],
        "documentationUrl": metadata["documentationUrl"],
        "icon": (ROOT / metadata["icon"]).read_text(),
        "spec": json.loads((ROOT / "destination_heap_analytics" / "spec.json").read_text()),
        "tombstone": False,
        "public": True,
        "custom": False,
        "supportLevel": metadata["supportLevel"],
        "releaseStage": metadata["releaseStage"],
        "license": metadata["license"],
        "githubIssueLabel": metadata["githubIssueLabel"],
        "tags": metadata["tags"],
        "language": languages[0],
        "allowedHosts": metadata["allowedHosts"],
        "supportsRefreshes": metadata["supportsRefreshes"],
        "supportsFileTransfer": False,
        "supportsDataActivation": metadata["supportsDataActivation"],
    }


def merged(registry: dict[str, Any], entry: dict[str, Any]) -> dict[str, Any]:
    """The registry with the entry in place of any earlier one of this connector, everything else as it was."""
    others = [
        destination
        for destination in registry.get("destinations", [])
        if destination.get("destinationDefinitionId") != entry["destinationDefinitionId"]
    ]
    return {**registry, "destinations": [*others, entry], "sources": registry.get("sources", [])}


def write(out: Path, repository: str | None, base: Path | None) -> list[Path]:
    """Writes the registry and the version's entry under `out`; returns their paths."""
    entry = registry_entry(repository)
    registry = merged(json.loads(base.read_text()) if base else {"destinations": [], "sources": []}, entry)
    files = {
        out / "registries" / "v0" / "oss_registry.json": registry,
        out / "metadata" / entry["dockerRepository"] / entry["dockerImageTag"] / "oss.json": entry,
    }
    for path, content in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(content, indent=2) + "\n")
    return list(files)


def main(argv: list[str] | None = None) -> None:
    """Writes the files and says what to serve."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="the folder to serve as CONNECTOR_REGISTRY_BASE_URL")
    parser.add_argument("--repository", help="the image's repository as your Airbyte pulls it")
    parser.add_argument("--merge", type=Path, help="a registry (oss_registry.json) to add this connector to")
    args = parser.parse_args(argv)
    for path in write(args.out, args.repository, args.merge):
        print(f"wrote {path}")
    if not args.merge:
        print(
            "this registry holds only Heap Analytics: an instance seeded from it gets no other connector it does not "
            "have yet, and no new versions of those it has; use --merge with Airbyte's oss_registry.json to keep them",
            file=sys.stderr,
        )


if __name__ == "__main__":
    main()
