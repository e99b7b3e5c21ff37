"""The image, the registry metadata and the package agree on name and version."""

import re
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
    assert "destination-heap-analytics=destination_heap_analytics.destination:run" in (ROOT / "setup.py").read_text()
