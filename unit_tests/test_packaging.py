"""The image, the registry metadata and the package agree on name and version."""

import json
import re
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent


def test_versions_and_names_agree():
    dockerfile = (ROOT / "Dockerfile").read_text()
    labels = dict(re.findall(r"^LABEL (io\.airbyte\.\w+)=(\S+)$", dockerfile, re.MULTILINE))
    metadata = yaml.safe_load((ROOT / "metadata.yaml").read_text())["data"]
    setup_version = re.search(r'^VERSION = "([^"]+)"$', (ROOT / "setup.py").read_text(), re.MULTILINE).group(1)
    assert labels["io.airbyte.version"] == metadata["dockerImageTag"] == setup_version
    assert labels["io.airbyte.name"] == metadata["dockerRepository"] == "airbyte/destination-heap-analytics"


def test_the_image_runs_the_console_script_setup_declares():
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert 'ENTRYPOINT ["destination-heap-analytics"]' in dockerfile
    assert "destination-heap-analytics=destination_heap_analytics:run" in (ROOT / "setup.py").read_text()
    assert 'AIRBYTE_ENTRYPOINT="destination-heap-analytics"' in dockerfile


def test_the_image_runs_as_a_numeric_non_root_user():
    users = re.findall(r"^USER (\S+)$", (ROOT / "Dockerfile").read_text(), re.MULTILINE)
    assert users and users[-1].split(":")[0].isdigit() and users[-1].split(":")[0] != "0"


def test_airbytes_builder_gets_its_base_image_pinned_by_digest_and_the_icon_exists():
    metadata = yaml.safe_load((ROOT / "metadata.yaml").read_text())["data"]
    assert re.fullmatch(
        r"docker\.io/airbyte/python-connector-base:[\d.]+@sha256:[0-9a-f]{64}",
        metadata["connectorBuildOptions"]["baseImage"],
    )
    assert (ROOT / metadata["icon"]).read_text().lstrip().startswith("<svg")


def test_a_track_config_shows_the_identity_fields_without_opening_optional_ones():
    spec = json.loads((ROOT / "destination_heap_analytics" / "spec.json").read_text())
    track = spec["connectionSpecification"]["properties"]["api"]["oneOf"][0]["properties"]
    assert track["identity_column"]["always_show"] and track["user_id_column"]["always_show"]
    assert spec["connectionSpecification"]["properties"]["app_id"]["airbyte_secret"] is False


def test_spec_answered_from_the_bundled_json_is_the_cdks_answer_without_importing_it():
    probe = "import sys, runpy; sys.argv = ['main.py', 'spec']; runpy.run_path('main.py', run_name='__main__'); "
    probe += "print('cdk' if 'airbyte_cdk' in sys.modules else 'no cdk', file=sys.stderr)"
    fast = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True)
    assert fast.stderr.strip() == "no cdk"
    from airbyte_cdk.models import AirbyteMessage, AirbyteMessageSerializer, Type

    from destination_heap_analytics.destination import DestinationHeapAnalytics, logger

    cdk = AirbyteMessage(type=Type.SPEC, spec=DestinationHeapAnalytics().spec(logger))
    assert json.loads(fast.stdout) == json.loads(json.dumps(AirbyteMessageSerializer.dump(cdk)))


def test_main_py_under_a_python_without_the_connector_says_how_to_run_it():
    blank = subprocess.run(
        [sys.executable, "-S", "main.py", "check", "--config", "c.json"], cwd=ROOT, capture_output=True, text=True
    )
    assert blank.returncode == 1
    assert "is not installed for" in blank.stderr and "scripts/demo.sh" in blank.stderr
    assert len(blank.stderr.strip().splitlines()) == 1
