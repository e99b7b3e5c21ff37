"""Every example in docs/heap-analytics.md holds: configs parse, and records map to the items shown."""

import json
import re
from pathlib import Path

import pytest

from destination_heap_analytics.config import API_MODELS, HeapConfig
from destination_heap_analytics.mapping import HeapItem, IdempotencyKey, mapper_for

DOC = (Path(__file__).resolve().parent.parent / "docs" / "heap-analytics.md").read_text()
BLOCKS = [
    (kind, stream.strip(), text)
    for kind, stream, text in re.findall(r"```json (config|record|heap)( \w+)?\n(.*?)```", DOC, re.DOTALL)
]
EMITTED_AT = 1666325394622


def examples():
    """(config, stream, record, items) for each record block, with the config block before it.

    A record block names its stream when the config has mappings (`json record users`); its Heap block
    then lists one item per mapping of that stream, in config order.
    """
    config = None
    found = []
    for index, (kind, stream, text) in enumerate(BLOCKS):
        if kind == "config":
            config = json.loads(text)
        elif kind == "record":
            assert BLOCKS[index + 1][0] == "heap", "a record example must be followed by its Heap item"
            expected = json.loads(BLOCKS[index + 1][2])
            found.append((config, stream, json.loads(text), expected if stream else [expected]))
    return found


def test_the_page_has_examples_for_every_api_type():
    types = {config["api"]["api_type"] for config, *_ in examples() if "api" in config}
    assert types == set(API_MODELS)


@pytest.mark.parametrize("text", [text for kind, _, text in BLOCKS if kind == "config"])
def test_every_config_example_is_valid(text):
    HeapConfig.parse(json.loads(text))


@pytest.mark.parametrize(("config", "stream", "record", "expected"), examples())
def test_every_record_example_maps_to_the_items_shown(config, stream, record, expected):
    heap_config = HeapConfig.parse(config)
    apis = [m.api for m in heap_config.mappings if m.stream == stream] if stream else [heap_config.api]
    assert len(apis) == len(expected), "one Heap item shown per mapping of the stream"
    for api, shown in zip(apis, expected, strict=True):
        item = mapper_for(api, IdempotencyKey(stream or "users")).map(record, EMITTED_AT, 1)
        assert isinstance(item, HeapItem)
        body = dict(item.body)
        if api.api_type == "track":
            assert body.pop("idempotency_key")
        assert body == shown


def test_the_pyairbyte_example_the_demo_runs_is_one_python_block_pointed_at_the_sandbox():
    from integration_tests.pyairbyte_demo import guide_example

    code = guide_example()
    compile(code, "docs/heap-analytics.md", "exec")
    assert '"base_url": heap.url' in code and "with HeapSandbox() as heap:" in code


def test_the_readmes_minimal_config_is_valid():
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    (text,) = re.findall(r"```json\n(.*?)```", readme, re.DOTALL)
    assert HeapConfig.parse(json.loads(text)).api.api_type == "track"


def test_every_file_a_docs_command_names_is_in_the_repository():
    """The commands of the README and docs/ name scripts, modules and samples that exist (a command whose file
    moved would not run as written)."""
    root = Path(__file__).resolve().parent.parent
    pages = [root / "README.md", *sorted((root / "docs").glob("*.md"))]
    commands = [block for page in pages for block in re.findall(r"```bash\n(.*?)```", page.read_text(), re.DOTALL)]
    named = set(
        re.findall(r"(?<![\w/.])((?:scripts|integration_tests|bench|sample_files)/[\w./-]+)", "\n".join(commands))
    )
    assert {"scripts/demo.sh", "scripts/test.sh", "integration_tests/heap_sandbox.py"} <= named
    assert [path for path in sorted(named) if not (root / path).exists()] == []
