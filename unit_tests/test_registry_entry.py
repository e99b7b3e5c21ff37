"""scripts/registry_entry.py writes a registry the Airbyte platform takes, by the platform's own schema."""

import copy
import json
import subprocess
import sys
import uuid
from pathlib import Path

import jsonschema
import pytest
import yaml
from airbyte_cdk.models import ConnectorSpecificationSerializer
from referencing import Registry
from referencing.jsonschema import DRAFT7

from destination_heap_analytics.config import REGION_URLS

ROOT = Path(__file__).resolve().parent.parent
SCHEMAS = Path(__file__).resolve().parent / "fixtures" / "airbyte"
PLATFORM_TYPES = (
    "https://github.com/airbytehq/airbyte-platform/blob/main/airbyte-config/config-models/src/main/resources/types/"
)
METADATA = yaml.safe_load((ROOT / "metadata.yaml").read_text())


def platform_validator() -> jsonschema.Draft7Validator:
    """The platform's ConnectorRegistry schema, its `$ref`s resolved to the stored types (others unresolvable)."""
    types = {path.name: yaml.safe_load(path.read_text()) for path in SCHEMAS.glob("*.yaml")}
    registry = Registry().with_resources(
        (PLATFORM_TYPES + name, DRAFT7.create_resource(schema)) for name, schema in types.items()
    )
    schema = types["ConnectorRegistry.yaml"]
    return jsonschema.Draft7Validator(
        schema, registry=registry, format_checker=jsonschema.Draft7Validator.FORMAT_CHECKER
    )


def run_script(out: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "registry_entry.py"), str(out), *args],
        capture_output=True,
        text=True,
        check=True,
    )


def written(out: Path, repository: str = "airbyte/destination-heap-analytics") -> tuple[dict, dict]:
    tag = METADATA["data"]["dockerImageTag"]
    registry = json.loads((out / "registries" / "v0" / "oss_registry.json").read_text())
    entry = json.loads((out / "metadata" / repository / tag / "oss.json").read_text())
    return registry, entry


def test_the_registry_passes_the_platforms_schema_and_holds_what_the_platform_reads(tmp_path):
    run_script(tmp_path)
    registry, entry = written(tmp_path)
    assert list(platform_validator().iter_errors(registry)) == []
    assert registry["destinations"] == [entry] and registry["sources"] == []
    data = METADATA["data"]
    # what ConnectorRegistryConverters.toActorDefinitionVersion / toStandardDestinationDefinition take from an entry
    assert entry["destinationDefinitionId"] == str(uuid.UUID(data["definitionId"]))  # Java reads a UUID
    assert (entry["name"], entry["dockerRepository"], entry["dockerImageTag"]) == (
        "Heap Analytics",
        "airbyte/destination-heap-analytics",
        data["dockerImageTag"],
    )
    assert entry["documentationUrl"] == data["documentationUrl"]
    assert entry["supportsDataActivation"] is True and entry["supportsRefreshes"] is True
    assert entry["supportLevel"] == "community" and entry["releaseStage"] == "alpha"
    assert entry["tombstone"] is False and entry["public"] is True and entry["custom"] is False
    assert entry["allowedHosts"] == data["allowedHosts"] and entry["language"] == "python"
    assert entry["icon"].lstrip().startswith("<svg")
    spec = json.loads((ROOT / "destination_heap_analytics" / "spec.json").read_text())
    assert entry["spec"] == spec
    assert (
        ConnectorSpecificationSerializer.load(entry["spec"]).connectionSpecification == spec["connectionSpecification"]
    )


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (lambda entry: entry.pop("spec"), "spec"),
        (lambda entry: entry.update(name=7), "name"),
        (lambda entry: entry.update(supportsDataActivation="yes"), "supportsDataActivation"),
        (lambda entry: entry.update(allowedHosts={"hosts": "heapanalytics.com"}), "allowedHosts"),
    ],
)
def test_the_schema_refuses_an_entry_the_platform_could_not_read(tmp_path, change, field):
    run_script(tmp_path)
    registry, _ = written(tmp_path)
    broken = copy.deepcopy(registry)
    change(broken["destinations"][0])
    errors = list(platform_validator().iter_errors(broken))
    assert errors and all(field in [*error.absolute_path, error.message.split("'")[1]] for error in errors)


def test_merging_keeps_every_other_connector_and_replaces_an_earlier_heap_entry(tmp_path):
    other = {"destinationDefinitionId": "22f6c74f-5699-40ff-833c-4a879ea40133", "name": "BigQuery"}
    stale = {"destinationDefinitionId": METADATA["data"]["definitionId"], "dockerImageTag": "0.1.0"}
    source = {"sourceDefinitionId": "dfd88b22-b603-4c3d-aad7-3701784586b1", "name": "Faker"}
    base = tmp_path / "airbyte.json"
    base.write_text(json.dumps({"destinations": [other, stale], "sources": [source]}))
    result = run_script(tmp_path / "out", "--merge", str(base), "--repository", "registry.example.com/heap")
    registry, entry = written(tmp_path / "out", "registry.example.com/heap")
    assert registry["destinations"] == [other, entry] and registry["sources"] == [source]
    assert entry["dockerRepository"] == "registry.example.com/heap"
    assert "holds only" not in result.stderr


def test_without_merge_the_script_warns_the_registry_holds_only_this_connector(tmp_path):
    assert "holds only Heap Analytics" in run_script(tmp_path).stderr


def test_metadata_passes_airbytes_metadata_schema_and_the_schema_is_not_vacuous():
    schema = json.loads((SCHEMAS / "ConnectorMetadataDefinitionV0.json").read_text())
    validator = jsonschema.Draft7Validator(schema, format_checker=jsonschema.Draft7Validator.FORMAT_CHECKER)
    assert list(validator.iter_errors(METADATA)) == []
    for broken in ({"supportLevel": "gold"}, {"allowedHosts": {"hosts": [1]}}, {"supportsRefreshes": "true"}):
        assert list(validator.iter_errors({**METADATA, "data": {**METADATA["data"], **broken}}))


def test_allowed_hosts_cover_every_heap_region_and_the_config_paths_they_name_exist():
    hosts = METADATA["data"]["allowedHosts"]["hosts"]
    assert {url.split("://")[1] for url in REGION_URLS.values()} <= set(hosts)
    spec = json.loads((ROOT / "destination_heap_analytics" / "spec.json").read_text())["connectionSpecification"]
    for host in hosts:
        if host.startswith("${"):
            first, *rest = host[2:-1].split(".")
            node = spec["properties"][first]
            for part in rest:
                node = next(branch["properties"][part] for branch in node["oneOf"] if part in branch["properties"])
            assert node["type"] == "string"
